import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { CATEGORIES } from '../bounces/categories.js';
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

const ipAddress = z.string().refine((value) => ipaddr.isValid(value), { message: 'not an IP address' });

/** "host", "host:port" or "[ipv6]:port". */
const hostAndPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+)(:\d{1,5})?$/, 'write host or host:port');

const nextHop = z.union([
  hostAndPort,
  z.strictObject({
    host: z.string().min(1),
    port: port.optional(),
    /** AUTH at a smarthost. */
    auth: z.strictObject({ user: z.string().min(1), pass: z.string() }).optional(),
    /** Implicit TLS from the first byte (port 465). */
    secure: z.boolean().optional(),
    /** Refuse to send unless STARTTLS succeeds. */
    requireTLS: z.boolean().optional(),
    /** Check the certificate (default: only when requireTLS or secure). */
    verifyCertificate: z.boolean().optional(),
  }),
]);

const seconds = z.number().min(0);

/** Postfix's smtp_tls_security_level words: none (never STARTTLS), may (opportunistic), encrypt, verify. */
const tlsLevel = z.enum(['none', 'may', 'encrypt', 'verify']);

const DOMAIN_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*\.?$/;

const HOST_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+$/;
const POOL_NAME = /^[a-zA-Z0-9_.-]+$/;
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

/** One source of an IP pool: the address we connect from and the name we give in EHLO for it. */
const poolSource = z.strictObject({
  address: ipAddress,
  heloName: z.string().regex(HOST_NAME, 'not a host name for EHLO; write the name the address\'s PTR record gives, e.g. tx1.example.com'),
});

/**
 * One selection rule (src/delivery/ip-pools.ts): exactly one of senderDomain (the envelope MAIL
 * FROM domain), authUser (the submission AUTH user) or header + value, and the pool it picks.
 */
const ipPoolRule = z
  .strictObject({
    senderDomain: z.string().regex(DOMAIN_NAME, 'not a domain name; write one such as shop.example').optional(),
    authUser: z.string().min(1).optional(),
    header: z.string().regex(HEADER_NAME, 'not a header field name, e.g. X-Rebound-Pool').optional(),
    /** The header's value that picks the pool (trimmed, case-insensitive). */
    value: z.string().min(1).optional(),
    pool: z.string().min(1),
  })
  .superRefine((rule, ctx) => {
    const matchers = [rule.senderDomain, rule.authUser, rule.header].filter((m) => m !== undefined).length;
    if (matchers !== 1) ctx.addIssue({ code: 'custom', message: 'a rule names exactly one of senderDomain, authUser or header (with value)' });
    if (rule.header !== undefined && rule.value === undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: `a header rule needs the value of ${rule.header} that picks the pool` });
    if (rule.header === undefined && rule.value !== undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: 'value belongs to a header rule; add header, or remove value' });
  });

/**
 * A sending limit (src/delivery/sending-limits.ts): the transactions started per sliding minute
 * and hour for one envelope sender domain (its subdomains too) or one source address, whatever
 * the destination; a new domain's or a new IP's warm-up, as Mailgun and SES users set them.
 */
const sendingLimit = z
  .strictObject({
    senderDomain: z.string().regex(DOMAIN_NAME, 'not a domain name; write one such as shop.example').optional(),
    localAddress: ipAddress.optional(),
    messagesPerMinute: positiveInt.nullable().default(null),
    messagesPerHour: positiveInt.nullable().default(null),
  })
  .superRefine((limit, ctx) => {
    if ((limit.senderDomain === undefined) === (limit.localAddress === undefined)) ctx.addIssue({ code: 'custom', message: 'a limit names exactly one of senderDomain or localAddress' });
    if (limit.messagesPerMinute === null && limit.messagesPerHour === null) ctx.addIssue({ code: 'custom', message: 'give messagesPerMinute or messagesPerHour (or both): a limit without a rate limits nothing' });
  });

const delivery = z.strictObject({
  /** false: accept and queue only (no delivery worker). */
  enabled: z.boolean(),
  /** Name in our EHLO; null means `hostname`. */
  heloName: z.string().min(1).nullable(),
  port,
  /** Next hop per recipient domain ("*" = every other domain: a smarthost), before DNS. */
  routes: z.record(z.string().min(1), nextHop),
  dns: z.strictObject({
    servers: z.array(hostAndPort),
    timeoutMs: positiveInt,
    cacheSeconds: seconds,
    /** Names that must resolve before an NXDOMAIN may bounce; [] turns the check off. */
    canaries: z.array(z.string().regex(/^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+\.?$/, 'write a domain name such as gmail.com')),
    canaryRecheckSeconds: z.number().positive(),
  }),
  localAddresses: z.array(ipAddress),
  /** Named pools of { address, heloName }, used in turn within a pool; picked by ipPoolRules. */
  ipPools: z.record(z.string(), z.array(poolSource).min(1, 'a pool needs at least one { address, heloName }')),
  /** First match wins; no match: localAddresses in turn and heloName. */
  ipPoolRules: z.array(ipPoolRule),
  /** Rates per envelope sender domain and per source address, on top of the shaping rules' per destination. */
  sendingLimits: z.array(sendingLimit),
  concurrency: positiveInt,
  perDomainConcurrency: positiveInt,
  batchSize: positiveInt,
  pollIntervalMs: positiveInt,
  connectionTimeoutSeconds: seconds,
  greetingTimeoutSeconds: seconds,
  socketTimeoutSeconds: seconds,
  maxConnectionsPerHost: positiveInt,
  maxMessagesPerConnection: positiveInt,
  /** Traffic shaping rules per provider (src/delivery/shaping-rules.ts); null: the shipped config/shaping.json. */
  shapingFile: z.string().min(1).nullable(),
  /** true: the SMTP client runs on its own worker thread; false: on the main thread. */
  sendThread: z.boolean(),
  /**
   * true: the spool's commits and the whole stage (scheduler, its store reads and writes, DNS, the
   * SMTP client) run on their own thread with their own store connection; sendThread then has no
   * effect.
   */
  stageThread: z.boolean(),
  /**
   * Header fields left out of the bytes sent (the store keeps them): control headers meant for
   * the relay, not the recipient. null: X-Mailgun-Tag, X-Mailgun-Variables and
   * submission.campaignHeader; []: nothing is left out.
   */
  stripHeaders: z.array(z.string().regex(HEADER_NAME, 'not a header field name, e.g. X-Mailgun-Tag')).nullable(),
  /** TLS to the next hop per recipient domain, like Postfix's smtp_tls_policy_maps. */
  tls: z.strictObject({
    /** The level for domains that policies does not name (and MTA-STS does not raise). */
    default: tlsLevel,
    /** Recipient domain (its subdomains too, unless they have their own entry) -> level. */
    policies: z.record(z.string(), tlsLevel).superRefine((policies, ctx) => {
      for (const domain of Object.keys(policies)) {
        if (!DOMAIN_NAME.test(domain)) ctx.addIssue({ code: 'custom', path: [domain], message: `"${domain}" is not a domain name; write one such as example.com` });
      }
    }),
    /** PEM file of CA certificates trusted besides the system's, for "verify" and MTA-STS; null: system CAs only. */
    caFile: z.string().min(1).nullable(),
  }),
  /** MTA-STS (RFC 8461): recipient domains that publish a policy get verified TLS to a listed MX. */
  mtaSts: z.strictObject({
    enabled: z.boolean(),
    /** Port of https://mta-sts.DOMAIN/; 443 except in tests (the HTTPS server on 127.0.0.1 runs on a free port). */
    httpsPort: port,
    /** The whole policy fetch (connect, TLS, reply) must end within this. */
    fetchTimeoutSeconds: z.number().positive(),
  }),
  retry: z.strictObject({
    scheduleSeconds: z.array(seconds).min(1),
    jitter: z.number().min(0).max(1),
    maxAttempts: positiveInt,
    maxAgeSeconds: seconds,
  }),
}).superRefine((settings, ctx) => {
  // Checked here, not by the record's key schema: zod reports a bad key as "Invalid key in record".
  for (const name of Object.keys(settings.ipPools)) {
    if (!POOL_NAME.test(name)) ctx.addIssue({ code: 'custom', path: ['ipPools', name], message: `"${name}" is not a pool name; use letters, digits, "_", "." or "-"` });
  }
  const sourceAddresses = new Set([...settings.localAddresses, ...Object.values(settings.ipPools).flatMap((pool) => pool.map((source) => source.address))]);
  settings.sendingLimits.forEach((limit, index) => {
    if (limit.localAddress !== undefined && !sourceAddresses.has(limit.localAddress)) {
      ctx.addIssue({ code: 'custom', path: ['sendingLimits', index, 'localAddress'], message: `${limit.localAddress} is not a source address: list it in delivery.localAddresses or a pool of delivery.ipPools` });
    }
  });
  settings.ipPoolRules.forEach((rule, index) => {
    if (!Object.hasOwn(settings.ipPools, rule.pool)) {
      const known = Object.keys(settings.ipPools);
      const fix = known.length > 0 ? `name one of ${known.join(', ')}` : 'define it in delivery.ipPools';
      ctx.addIssue({ code: 'custom', path: ['ipPoolRules', index, 'pool'], message: `no IP pool named "${rule.pool}"; ${fix}` });
    }
  });
});

export type DeliveryConfig = z.infer<typeof delivery>;

/** DKIM signing of relayed mail (src/dkim/). Keys live in the store (rebound dkim add), or in files named here. */
const dkim = z.strictObject({
  /** false: nothing is signed, whatever keys exist. */
  enabled: z.boolean(),
  /** How often delivery looks for keys added, activated or removed by `rebound dkim` (and changed key files). */
  reloadSeconds: z.number().positive(),
  /** Keys kept in files instead of the store: { domain, selector, privateKeyFile } (PEM, RSA-2048 or Ed25519). */
  keys: z.array(z.strictObject({ domain: z.string().min(1), selector: z.string().min(1), privateKeyFile: z.string().min(1) })),
});

export type DkimConfig = z.infer<typeof dkim>;

export type NextHopConfig = z.infer<typeof nextHop>;

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
    /** Days to keep a finished message's body, and its whole history; 0 keeps them forever. */
    retention: z.strictObject({
      bodyDays: z.number().int().min(0),
      historyDays: z.number().int().min(0),
      /** Days to keep an inbound report that no event names; 0: as long as historyDays. */
      unmatchedReportDays: z.number().int().min(0),
    }),
    /** State shared by several relays (src/shared/); url null: everything stays in this node's SQLite file. */
    shared: z.strictObject({
      /** postgres://user:password@host:port/database */
      url: z.string().regex(/^postgres(ql)?:\/\//, 'write a PostgreSQL URL such as postgres://rebound@db.internal:5432/rebound').nullable(),
      /** This node's name in the shared store (who made a change); null: the hostname. */
      nodeName: z.string().min(1).max(100).nullable(),
      /** How often a node looks for changes it was not notified of, and retries shipping its own. */
      catchUpSeconds: z.number().positive(),
    }),
  }),
  submission: z
    .strictObject({
      host: z.string().min(1),
      port,
      auth: z.strictObject({
        users: z.array(submissionUser),
        maxFailuresPerConnection: positiveInt,
        maxFailuresPerClient: positiveInt,
        maxFailuresPerUser: positiveInt,
        failureWindowSeconds: positiveInt,
        maxConcurrentVerifications: positiveInt,
      }),
      allowNetworks: z.array(cidr),
      plaintextAuthNetworks: z.array(cidr),
      tls: z.strictObject({ key: filePath, cert: filePath }),
      maxMessageSize: positiveInt,
      maxRecipients: positiveInt,
      maxClients: positiveInt,
      /** 0: no cap. Clients in allowNetworks are not capped. */
      maxClientsPerIp: z.number().int().min(0),
      /** Message content in memory at once, across all connections. */
      maxBytesInFlight: positiveInt,
      /** Longest line of a message, without CRLF (RFC 5321: 998); 0: no limit. */
      maxLineLength: z.number().int().min(0),
      /** Longest a session may last; 0: no limit. */
      sessionTimeoutSeconds: z.number().int().min(0),
      /** Commands that send no mail between two accepted messages; 0: no limit. */
      maxJunkCommands: z.number().int().min(0),
      campaignHeader: z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, 'not a header field name'),
      socketTimeoutSeconds: positiveInt,
      /** socketTimeoutSeconds for command lines once 3/4 of maxClients are open; 0: never shortened. */
      stressSocketTimeoutSeconds: z.number().int().min(0),
      shutdownTimeoutSeconds: z.number().min(0),
    })
    .refine((s) => (s.tls.key === null) === (s.tls.cert === null), {
      message: 'set both tls.key and tls.cert for STARTTLS, or neither',
      path: ['tls'],
    })
    .refine((s) => s.maxBytesInFlight >= s.maxMessageSize, {
      message: 'must be at least submission.maxMessageSize, or no message of the largest size could ever be taken',
      path: ['maxBytesInFlight'],
    }),
  delivery,
  dkim,
  returnPath: z.strictObject({
    /** Domain of the VERP return path (its MX points at the inbound listener); null means `hostname`. */
    domain: z.string().min(1).nullable(),
    prefix: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,19}$/, 'lower-case letters, digits, ".", "_" or "-" (at most 20)'),
    /** HMAC key of the tokens; null: generated on first start and kept in the store. */
    secret: z.string().min(16, 'at least 16 characters').nullable(),
    maxAgeDays: positiveInt,
  }),
  inbound: z
    .strictObject({
      enabled: z.boolean(),
      host: z.string().min(1),
      port,
      maxMessageSize: positiveInt,
      maxClients: positiveInt,
      /** 0: no cap. */
      maxClientsPerIp: z.number().int().min(0),
      sessionTimeoutSeconds: z.number().int().min(0),
      maxJunkCommands: z.number().int().min(0),
      /**
       * Milliseconds between accepting a connection and the greeting; a client that sends a command
       * before it gets 421 (Postfix's postscreen_greet_wait). 0: greet at once.
       */
      greetPauseMs: z.number().int().min(0).max(30_000),
      /** Report content in memory at once, across all connections. */
      maxBytesInFlight: positiveInt,
      /** Largest report taken without a valid token in RCPT TO (postmaster@, abuse@). */
      maxReportSizeWithoutToken: positiveInt,
      /** Reports one client (IPv4 address, IPv6 /64) may store per minute and bytes per hour; 0: no limit. */
      maxReportsPerClientPerMinute: z.number().int().min(0),
      maxBytesPerClientPerHour: z.number().int().min(0),
    })
    .refine((s) => s.maxBytesPerClientPerHour === 0 || s.maxBytesPerClientPerHour >= s.maxMessageSize, {
      message: 'must be at least inbound.maxMessageSize (or 0), or a report of the largest size is never taken',
      path: ['maxBytesPerClientPerHour'],
    })
    .refine((s) => s.maxBytesInFlight >= s.maxMessageSize, {
      message: 'must be at least inbound.maxMessageSize, or no report of the largest size could ever be taken',
      path: ['maxBytesInFlight'],
    }),
  unsubscribe: z
    .strictObject({
      /** Add List-Unsubscribe and List-Unsubscribe-Post (RFC 8058) to outgoing mail. */
      enabled: z.boolean(),
      /** Base https URL the one-click POST goes to, served by the admin server at /unsubscribe/<token>. */
      url: z.string().url().startsWith('https://', 'must be an https:// URL (RFC 8058)').nullable(),
      /** Local part prefix of the mailto: address at the return-path domain. */
      prefix: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,19}$/, 'lower-case letters, digits, ".", "_" or "-" (at most 20)'),
    })
    .refine((u) => !u.enabled || u.url !== null, { message: 'set unsubscribe.url when unsubscribe.enabled is true', path: ['url'] }),
  webhooks: z.strictObject({
    endpoints: z.array(
      z.strictObject({
        url: z.string().url().regex(/^https?:\/\//, 'must be an http:// or https:// URL'),
        events: z.array(z.enum(['delivered', 'temporary_fail', 'permanent_fail', 'complained', 'unsubscribed'])).min(1),
        secret: z.string().min(16, 'at least 16 characters'),
      }),
    ),
    /** Allow targets on loopback, private, link-local or metadata addresses (tests; internal hooks). */
    allowPrivateTargets: z.boolean(),
    timeoutSeconds: positiveInt,
    concurrency: positiveInt,
    pollIntervalMs: positiveInt,
    /** Waits between tries; the last entry is the final wait. The default spans about 8 hours. */
    retryScheduleSeconds: z.array(seconds).min(1),
  }),
  admin: z.strictObject({
    enabled: z.boolean(),
    host: z.string().min(1),
    port,
    /**
     * Bearer tokens (API) and sign-in tokens (panel): { name, token, role }; the name is the actor
     * in the audit; role admin may change things, viewer may only look. Empty: one admin token is
     * generated at the first start and written to admin-token beside the store (see relay.ts).
     */
    tokens: z.array(
      z.strictObject({
        name: z.string().regex(/^[\w.-]{1,40}$/, 'letters, digits, ".", "_" or "-"'),
        token: z.string().min(24, 'at least 24 characters'),
        role: z.enum(['admin', 'viewer']).default('admin'),
      }),
    ),
    /** Mark the panel's session cookie Secure: set it when the admin server is reached over https (a TLS proxy in front). */
    secureCookies: z.boolean(),
    /** The largest CSV import the API takes, in bytes (JSON bodies stop at 1 MiB). */
    maxImportBytes: positiveInt,
  }),
  suppression: z.strictObject({
    /** Hard categories whose permanent failures put the address on the bounces list. */
    categories: z.array(z.enum(CATEGORIES)),
  }),
});

export type ValidatedConfig = z.infer<typeof configSchema>;
