import addressparser from 'nodemailer/lib/addressparser';
import libmime from 'libmime';

export interface MessageSummary {
  messageIdHeader: string | null;
  fromDomain: string | null;
  subject: string | null;
  campaignId: string | null;
  /** Every X-Mailgun-Tag field's value, in order (checked by senderControls). */
  tagFields: string[];
  /** Every X-Mailgun-Variables field's value, in order (checked by senderControls). */
  variablesFields: string[];
}

/** Mailgun's control headers, read beside the campaign header (see sender-controls.ts). */
export const TAG_HEADER = 'x-mailgun-tag';
export const VARIABLES_HEADER = 'x-mailgun-variables';
/** More fields than this of one control header are not read: a bound on a forged header section. */
const MAX_CONTROL_FIELDS = 64;

const MAX_HEADER_BYTES = 256 * 1024;

/** The end of the header section: the first empty line, whether CRLF or bare LF. */
function headerSectionEnd(raw: Buffer): number {
  const limit = Math.min(raw.length, MAX_HEADER_BYTES);
  for (let i = raw.indexOf(0x0a); i !== -1 && i < limit; i = raw.indexOf(0x0a, i + 1)) {
    const next = raw[i + 1];
    if (next === 0x0a) return i + 1;
    if (next === 0x0d && raw[i + 2] === 0x0a) return i + 1;
  }
  return limit;
}

/**
 * Reads the few header fields the spool indexes (Message-ID, From domain, Subject, campaign id,
 * Mailgun's tag and variables fields)
 * without parsing the body: this runs for every accepted message.
 */
export function summarizeMessage(raw: Buffer, campaignHeader: string): MessageSummary {
  const wanted = new Map<string, string>();
  const names = new Set(['message-id', 'from', 'subject', campaignHeader.toLowerCase()]);
  const section = raw.subarray(0, headerSectionEnd(raw)).toString('utf8');
  let name: string | null = null;
  let value = '';
  const tagFields: string[] = [];
  const variablesFields: string[] = [];
  const keep = (): void => {
    if (name === null) return;
    // Encoded words decoded: nodemailer writes a JSON value with quotes and spaces as =?UTF-8?Q?...?=.
    if (name === TAG_HEADER) {
      if (tagFields.length < MAX_CONTROL_FIELDS) tagFields.push(decodeWords(value.trim()));
    } else if (name === VARIABLES_HEADER) {
      if (variablesFields.length < MAX_CONTROL_FIELDS) variablesFields.push(decodeWords(value.trim()));
    }
    if (names.has(name) && !wanted.has(name)) wanted.set(name, value.trim());
  };
  for (const line of section.split(/\r?\n/)) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      value += ` ${line.trim()}`; // folded continuation (RFC 5322 2.2.3)
      continue;
    }
    keep();
    const colon = line.indexOf(':');
    if (colon <= 0) {
      name = null;
      continue;
    }
    name = line.slice(0, colon).trim().toLowerCase();
    value = line.slice(colon + 1);
  }
  keep();

  const messageId = wanted.get('message-id');
  const from = wanted.get('from');
  const subject = wanted.get('subject');
  const campaign = wanted.get(campaignHeader.toLowerCase());
  return {
    messageIdHeader: messageId ? messageId.replace(/^<|>$/g, '') || null : null,
    fromDomain: from ? domainOfFirstAddress(from) : null,
    subject: subject !== undefined ? decodeWords(subject) : null,
    campaignId: campaign ? campaign : null,
    tagFields,
    variablesFields,
  };
}

function domainOfFirstAddress(field: string): string | null {
  const [first] = addressparser(field, { flatten: true });
  const address = first && 'address' in first ? first.address : '';
  const at = address.lastIndexOf('@');
  return at > 0 ? address.slice(at + 1).toLowerCase() : null;
}

function decodeWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    return value; // a broken encoded-word is kept as sent rather than lost
  }
}
