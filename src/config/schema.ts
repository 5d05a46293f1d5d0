import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { isPasswordHash } from '../submission/passwords.js';

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().min(1);

const cidr = z.string().refine(
  (value) => {
    try {
      ipaddr.parseCIDR(value);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a CIDR network (write it like 127.0.0.0/8 or ::1/128)' },
);

const submissionUser = z.strictObject({
  username: z.string().min(1),
  passwordHash: z.string().refine(isPasswordHash, {
    message: 'not a password hash made by `rebound passwd` (scrypt$...)',
  }),
});

const filePath = z.string().min(1).nullable();

export const configSchema = z.strictObject({
  /** Name in the greeting, EHLO reply and Received header; null means the machine's hostname. */
  hostname: z.string().min(1).nullable(),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  }),
  store: z.strictObject({
    path: z.string().min(1),
    synchronous: z.enum(['FULL', 'EXTRA', 'NORMAL']),
    groupCommitMaxMessages: positiveInt.max(10_000),
  }),
  submission: z
    .strictObject({
      host: z.string().min(1),
      port,
      auth: z.strictObject({ users: z.array(submissionUser) }),
      allowNetworks: z.array(cidr),
      plaintextAuthNetworks: z.array(cidr),
      tls: z.strictObject({ key: filePath, cert: filePath }),
      maxMessageSize: positiveInt,
      maxRecipients: positiveInt,
      maxClients: positiveInt,
      campaignHeader: z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, 'not a header field name'),
      socketTimeoutSeconds: positiveInt,
      shutdownTimeoutSeconds: z.number().min(0),
    })
    .refine((s) => (s.tls.key === null) === (s.tls.cert === null), {
      message: 'set both tls.key and tls.cert for STARTTLS, or neither',
      path: ['tls'],
    }),
});

export type ValidatedConfig = z.infer<typeof configSchema>;
