import addressparser from 'nodemailer/lib/addressparser';
import { normalizeAddress } from '../address.js';
import { splitMessage, type HeaderField } from '../dkim/canonicalization.js';
import type { DkimKeyring } from '../dkim/keyring.js';
import { dkimSignatureFields } from '../dkim/signature.js';
import type { Logger } from '../logger.js';
import { messageAsReceived } from './wire-data.js';

/** The domain of the first address of the first From field (the one DMARC aligns with), IDN as punycode; null when there is none. */
export function fromDomainOf(fields: readonly HeaderField[]): string | null {
  const from = fields.find((field) => field.key === 'from');
  if (!from) return null;
  // The value's bytes as UTF-8 (RFC 6532), so an international domain reaches domainToASCII whole.
  const value = Buffer.from(from.value, 'latin1').toString('utf8');
  const [first] = addressparser(value, { flatten: true });
  const address = first && 'address' in first ? first.address : '';
  return normalizeAddress(address)?.domain ?? null;
}

/**
 * Signs relayed mail on its way out: the bytes sent get DKIM-Signature fields on top; the store
 * keeps the bytes received. Mail whose From domain (or a parent of it) has no key goes as it is.
 */
export class DkimSigner {
  constructor(
    private readonly keyring: DkimKeyring,
    private readonly log: Logger,
  ) {}

  /**
   * `content` with a signature per key of its From domain in front. Signed over the bytes the
   * receiver will read (line ends made CRLF as on the wire), so a bare LF does not break the
   * signature. A failure to sign is logged and the message goes unsigned, as it would without a key.
   */
  async sign(content: Buffer, queueId: string): Promise<Buffer> {
    if (this.keyring.isEmpty()) return content;
    try {
      const message = splitMessage(messageAsReceived(content));
      const fromDomain = fromDomainOf(message.fields);
      const keys = fromDomain ? this.keyring.keysFor(fromDomain) : [];
      if (keys.length === 0) return content;
      const fields = await dkimSignatureFields(message, keys, new Date());
      return Buffer.concat([Buffer.from(fields.join(''), 'latin1'), content]);
    } catch (error) {
      this.log.error({ queueId, err: error }, 'could not DKIM-sign a message; it goes out unsigned');
      return content;
    }
  }
}
