/**
 * RFC 822-style field blocks, as message/delivery-status (RFC 3464 §2.1) and
 * message/feedback-report (RFC 5965 §3.1) carry them, plus the address forms those fields use.
 */

export interface Field {
  /** Lower-case field name. */
  readonly name: string;
  readonly value: string;
  /** True when one or more blank lines came before this field. */
  readonly afterBlank: boolean;
}

const FIELD_LINE = /^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$/;

/**
 * Every field in order, continuation lines unfolded. Lines that are not fields are skipped: some
 * MTAs put comments or stray text between the blocks.
 */
/** A field longer than this is cut: no legitimate Diagnostic-Code comes near it. */
const MAX_FIELD_CHARS = 4000;

export function readFields(text: string, limit = 50_000): Field[] {
  const fields: Field[] = [];
  let blank = false;
  let current: { name: string; value: string; afterBlank: boolean } | null = null;
  const keep = (): void => {
    if (current !== null) fields.push({ name: current.name, value: current.value.trim(), afterBlank: current.afterBlank });
    current = null;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      keep();
      blank = true;
      continue;
    }
    if ((line.startsWith(' ') || line.startsWith('\t')) && current !== null) {
      if (current.value.length < MAX_FIELD_CHARS) current.value += ` ${line.trim()}`;
      continue;
    }
    keep();
    const match = FIELD_LINE.exec(line.length > MAX_FIELD_CHARS ? line.slice(0, MAX_FIELD_CHARS) : line);
    if (match?.[1] === undefined) continue;
    current = { name: match[1].toLowerCase(), value: match[2] ?? '', afterBlank: blank };
    blank = false;
    if (fields.length >= limit) break;
  }
  keep();
  return fields;
}

/** `rfc822; user@example.com` → `rfc822`, `user@example.com` (RFC 3464 §2.1.2 type ";" value). */
export function splitTyped(value: string): { type: string | null; value: string } {
  const semicolon = value.indexOf(';');
  if (semicolon === -1) return { type: null, value: value.trim() };
  const type = value.slice(0, semicolon).trim();
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(type)) return { type: null, value: value.trim() };
  return { type: type.toLowerCase(), value: value.slice(semicolon + 1).trim() };
}

/** RFC 3461 §4: xtext escapes any byte as "+" two hex digits. */
export function decodeXtext(value: string): string {
  return value.includes('+') ? value.replace(/\+([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))) : value;
}

const IMCEA_SMTP = /^IMCEASMTP-([^@]+)@/i;
const INVISIBLE = /[\p{Cc}\p{Cf}]/gu;
const ANGLE_ADDRESS = /<([^<>\s]+@[^<>\s]+)>/;
const BARE_ADDRESS = /[^\s<>"'(),;:[\]\\]+@[^\s<>"'(),;:[\]\\]+/;

/**
 * An address as a report writes it — `<User@Example.COM>`, `"user@example.com"`, `user@example.com.`
 * — reduced to `User@example.com` (the domain lower-cased, RFC 5321 §2.4). A value without an
 * address in it (`|/usr/bin/procmail`, a bare local part) is returned trimmed, or null when empty.
 */
export function cleanAddress(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  // Control and format characters (a NUL from "+00", a zero-width space, a BOM) are never part
  // of an address; a value of nothing else is no recipient, not an empty-string one.
  const text = (value.length > 1000 ? value.slice(0, 1000) : value).replace(INVISIBLE, '').trim();
  if (text === '') return null;
  const x400 = X400_NAME.test(text) ? addressOfX400(text) : null;
  if (x400 !== null) return normalizeAddress(x400);
  const found = ANGLE_ADDRESS.exec(text)?.[1] ?? BARE_ADDRESS.exec(text)?.[0];
  // Exchange encapsulates a foreign address as IMCEA<type>-<address, "+XX" escaped>@<its domain>.
  const imcea = found === undefined ? null : IMCEA_SMTP.exec(found)?.[1];
  if (imcea != null && isAddress(decodeXtext(imcea))) return normalizeAddress(decodeXtext(imcea));
  if (found === undefined) {
    const stripped = text.replace(/^[<"']+|[>"']+$/g, '').trim();
    return stripped === '' ? null : stripped;
  }
  return normalizeAddress(found);
}

/** Lower-cases the domain and drops the punctuation a sentence leaves around an address. */
export function normalizeAddress(address: string): string {
  const trimmed = address.replace(/^[<"'(\[]+/, '').replace(/[>"').,;:\]]+$/, '');
  const at = trimmed.lastIndexOf('@');
  if (at <= 0) return trimmed;
  return `${trimmed.slice(0, at)}@${trimmed.slice(at + 1).toLowerCase()}`;
}

/** An Exchange-internal encapsulated name (IMCEAEX-_O=ORG_OU=...@domain): not an address anyone sent to. */
export function isEncapsulated(value: string): boolean {
  return /^IMCEA[A-Z0-9]*-/i.test(value);
}

/** True for a value that holds a mailbox address (local@domain). */
export function isAddress(value: string | null): value is string {
  if (value === null) return false;
  const at = value.lastIndexOf('@');
  return at > 0 && at < value.length - 1 && !/\s/.test(value);
}

/** An X.400 O/R name in its text form (RFC 1685): "/S=user/OU=sales/O=example/C=jp/", "/RFC-822=user(a)example.com/". */
const X400_NAME = /\/(?:[A-Za-z][A-Za-z0-9.:-]*=[^/]*\/){1,16}/;
const X400_ATTRIBUTE = /([A-Za-z][A-Za-z0-9.:-]*)=([^/]*)/g;
/** RFC 2156 §4.3.2 escapes of characters an X.400 printable string cannot hold. */
const X400_ESCAPES: Readonly<Record<string, string>> = { a: '@', p: '%', b: '!', q: '"', u: '_', l: '(', r: ')' };

/**
 * The mail address an X.400 O/R name stands for, or null. The RFC 822 address itself when the
 * name carries it (the `RFC-822` domain-defined attribute, RFC 2156 §4.3.4: "/RFC-822=user(a)example.com/",
 * also written "RFC822=", "DDA:RFC-822=", "DD.RFC-822="), its escapes decoded ("(a)" → "@",
 * "(p)" → "%", "(065)" → "A"). Else, for a personal name ("/G=ann/S=lee/OU=sales/O=example/C=jp/"),
 * the local part from the given name and surname and the domain from the organisational units
 * (most specific first), the organisation and the country: the tree a gateway's mapping table
 * (RFC 2156 §4.3) most often mirrors; null when that gives no dotted domain.
 */
export function addressOfX400(text: string): string | null {
  const name = X400_NAME.exec(text)?.[0];
  if (name === undefined) return null;
  const values = new Map<string, string[]>();
  for (const [, key = '', raw = ''] of name.matchAll(X400_ATTRIBUTE)) {
    const attribute = key.toUpperCase().replace(/^DDA?[.:]/, '').replace(/^RFC822$/, 'RFC-822');
    const value = raw.trim();
    if (value === '') continue;
    values.set(attribute, [...(values.get(attribute) ?? []), value]);
  }
  const rfc822 = values.get('RFC-822')?.[0];
  if (rfc822 !== undefined) {
    const address = decodeX400Escapes(rfc822);
    return isAddress(address) ? address : null;
  }
  const surname = values.get('S')?.[0];
  if (surname === undefined) return null;
  const given = values.get('G')?.[0];
  const local = decodeX400Escapes(given === undefined ? surname : `${given}.${surname}`);
  const domain = [...(values.get('OU') ?? []).reverse(), ...(values.get('O') ?? []), ...(values.get('C') ?? [])]
    .map((part) => decodeX400Escapes(part).toLowerCase())
    .join('.');
  const address = `${local}@${domain}`;
  return domain.includes('.') && /^[a-z0-9.-]+$/.test(domain) && isAddress(address) ? address : null;
}

const X400_NAMES = new RegExp(X400_NAME.source, 'g');

/**
 * The other text form of an O/R name (RFC 1685 §3, as Exchange 5.5 and X.400 gateways print it in
 * NDRs): attributes separated by ";" ("c=US;a= ;p=Example;o=Gateway;dda:RFC-822=ann(a)example.org;").
 * Each value is short and holds no separator, so the match is linear.
 */
const X400_SEMICOLON_NAMES = /(?<![\w.:-])(?:[A-Za-z][A-Za-z0-9.:-]{0,16}=[^;=/<>@\n]{0,64};){2,16}/g;

/** A line with every X.400 O/R name that stands for a mail address written as that address. */
export function rewriteX400(line: string): string {
  if (!line.includes('=')) return line;
  let rewritten = line;
  if (line.includes('/')) rewritten = rewritten.replace(X400_NAMES, (name) => addressOfX400(name) ?? name);
  if (line.includes(';')) {
    rewritten = rewritten.replace(X400_SEMICOLON_NAMES, (name) => addressOfX400(`/${name.replaceAll(';', '/')}`) ?? name);
  }
  return rewritten;
}

function decodeX400Escapes(value: string): string {
  return value.replace(/\((\d{3}|[a-z])\)/gi, (whole, code: string) => {
    if (/^\d{3}$/.test(code)) return String.fromCharCode(Number(code));
    return X400_ESCAPES[code.toLowerCase()] ?? whole;
  });
}
