const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, e.g. "Sun, 22 Nov 2026 20:33:31 +0000". */
export function rfc5322Date(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return (
    `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`
  );
}

export interface ReceivedFields {
  helo: string | null;
  clientIp: string;
  hostname: string;
  protocol: string;
  queueId: string;
  recipients: readonly string[];
  date: Date;
}

/** What the client said, made safe to put in a header: printable ASCII, bounded length. */
function clean(text: string): string {
  return text.replace(/[^\x21-\x7e]/g, '').slice(0, 255) || 'unknown';
}

/**
 * The trace field of RFC 5321 4.4, with the RFC 3848 protocol (ESMTPSA = TLS + AUTH). The "for"
 * clause names the recipient only when there is one, as Postfix does, so a message to many does
 * not show every recipient to each.
 */
export function receivedHeader(fields: ReceivedFields): string {
  const ip = fields.clientIp.replace(/^::ffff:/, '');
  const literal = ip.includes(':') ? `IPv6:${ip}` : ip;
  const forClause = fields.recipients.length === 1 ? `\r\n\tfor <${clean(fields.recipients[0] as string)}>` : '';
  return (
    `Received: from ${clean(fields.helo ?? literal)} ([${literal}])\r\n` +
    `\tby ${clean(fields.hostname)} (Rebound) with ${fields.protocol} id ${fields.queueId}${forClause};\r\n` +
    `\t${rfc5322Date(fields.date)}\r\n`
  );
}
