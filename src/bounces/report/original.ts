/**
 * The returned original: a report carries the message (message/rfc822, RFC 6532 message/global),
 * its headers only (text/rfc822-headers, message/global-headers), or, in a plain-text NDR, the
 * message quoted after the error section. Its Message-ID and campaign header tie the report to
 * the message we sent.
 */
import { cleanAddress, isAddress } from './fields.js';
import { first, headerText, parseHeaderSection, type Entity, type Headers } from './mime.js';
import type { ReturnedMessage } from './types.js';

export const DEFAULT_CAMPAIGN_HEADER = 'X-Campaign-ID';

export function emptyOriginal(): ReturnedMessage {
  return { messageId: null, campaignId: null, returnPath: null, to: null };
}

export function originalFromHeaders(headers: Headers, campaignHeader: string): ReturnedMessage {
  return {
    messageId: messageIdOf(first(headers, 'message-id')),
    campaignId: nonEmpty(headerText(first(headers, campaignHeader.toLowerCase()))),
    returnPath: addressOf(first(headers, 'return-path')),
    to: addressOf(first(headers, 'to')),
  };
}

/** The returned-message entity of a report tree: the first message part that is not a report. */
export function findReturnedMessage(root: Entity): Entity | null {
  for (const part of root.parts) {
    if (part.message !== null && !isReport(part.message)) return part.message;
    const nested = findReturnedMessage(part);
    if (nested !== null) return nested;
  }
  // Some MTAs attach the original without a message/rfc822 wrapper: a later part whose own header
  // is the original's (Received, Message-ID, From).
  for (const part of root.parts.slice(1)) {
    if (part.headers.has('message-id') && part.headers.has('from') && part.headers.has('received')) return part;
  }
  return null;
}

function isReport(entity: Entity): boolean {
  return entity.type === 'multipart/report';
}

const HEADER_LINE = /^[A-Za-z][A-Za-z0-9-]*:[ \t]/;
const INDENTED_HEADER_LINE = /^[ \t]+(?:Received|Return-Path|Message-ID|From|To|Subject|Date):/i;

/**
 * A plain-text NDR quotes the original after its error section, sometimes indented (fml) or after
 * a line of prose. The first run of header lines there is read as the original's header.
 */
export function originalFromText(text: string, campaignHeader: string): ReturnedMessage | null {
  const lines = text.split('\n', 2000);
  let startLine = -1;
  let indented = false;
  for (let i = 0; i < Math.min(lines.length, 40); i += 1) {
    const line = lines[i] ?? '';
    if (HEADER_LINE.test(line)) {
      startLine = i;
      break;
    }
    if (INDENTED_HEADER_LINE.test(line)) {
      startLine = i;
      indented = true;
      break;
    }
  }
  if (startLine === -1) return null;
  const block: string[] = [];
  for (let i = startLine; i < lines.length; i += 1) {
    let line = lines[i] ?? '';
    if (indented) line = line.replace(/^[ \t]{1,4}/, '');
    if (line.trim() === '') break;
    block.push(line);
  }
  const original = originalFromHeaders(parseHeaderSection(block.join('\n')), campaignHeader);
  return original.messageId === null && original.to === null && original.campaignId === null ? null : original;
}

export function messageIdOf(value: string | undefined): string | null {
  if (value === undefined) return null;
  const inside = /<([^<>\s]+)>/.exec(value)?.[1] ?? value.trim();
  return inside === '' ? null : inside;
}

function addressOf(value: string | undefined): string | null {
  if (value === undefined) return null;
  const address = cleanAddress(headerText(value));
  return isAddress(address) ? address : null;
}

function nonEmpty(value: string): string | null {
  const trimmed = value.trim();
  return trimmed === '' ? null : trimmed;
}

/** All addresses in an address-list header (To, X-Failed-Recipients). */
export function addressesOf(value: string | undefined): string[] {
  if (value === undefined) return [];
  const found: string[] = [];
  for (const piece of headerText(value).split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)) {
    const address = cleanAddress(piece);
    if (isAddress(address) && !found.includes(address)) found.push(address);
  }
  return found;
}
