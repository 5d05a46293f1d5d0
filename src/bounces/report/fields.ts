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

const ANGLE_ADDRESS = /<([^<>\s]+@[^<>\s]+)>/;
const BARE_ADDRESS = /[^\s<>"'(),;:[\]\\]+@[^\s<>"'(),;:[\]\\]+/;

/**
 * An address as a report writes it — `<User@Example.COM>`, `"user@example.com"`, `user@example.com.`
 * — reduced to `User@example.com` (the domain lower-cased, RFC 5321 §2.4). A value without an
 * address in it (`|/usr/bin/procmail`, a bare local part) is returned trimmed, or null when empty.
 */
export function cleanAddress(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const text = (value.length > 1000 ? value.slice(0, 1000) : value).trim();
  if (text === '') return null;
  const found = ANGLE_ADDRESS.exec(text)?.[1] ?? BARE_ADDRESS.exec(text)?.[0];
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

/** True for a value that holds a mailbox address (local@domain). */
export function isAddress(value: string | null): value is string {
  if (value === null) return false;
  const at = value.lastIndexOf('@');
  return at > 0 && at < value.length - 1 && !/\s/.test(value);
}
