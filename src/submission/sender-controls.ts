import { MAX_TAG_LENGTH, MAX_TAGS, tagKey, tagProblem } from '../store/message-tags.js';

export { MAX_TAG_LENGTH, MAX_TAGS };

/**
 * Mailgun's per-message controls, carried over for apps that move from Mailgun's SMTP service:
 * `X-Mailgun-Tag` (one tag per field, several fields) and `X-Mailgun-Variables` (a JSON object per
 * field; several fields' maps are combined, as Mailgun combines them). Mailgun accepts the message
 * whatever these hold and leaves out what it cannot use, so Rebound does too: a bad tag or bad
 * variables never cost the message, they are left out and the reason is logged.
 *
 * Limits: Mailgun's for tags (store/message-tags.ts); for variables, Rebound's own bound of 4 KB of
 * JSON (the webhook payload carries them to every endpoint for every event of every recipient).
 */

export const MAX_VARIABLES_BYTES = 4096;

export interface SenderControls {
  /** Lower-cased, de-duplicated, at most MAX_TAGS, in the order given. */
  tags: string[];
  /** The combined variables as JSON text (an object), or null when none or when they were left out. */
  variables: string | null;
  /** Why something given was left out, one line each, for the log; empty when all was kept. */
  problems: string[];
}

export function senderControls(tagFields: readonly string[], variablesFields: readonly string[]): SenderControls {
  const problems: string[] = [];
  const tags: string[] = [];
  for (const field of tagFields) {
    const tag = tagKey(field);
    const problem = tagProblem(tag);
    if (problem === 'empty') {
      problems.push('an empty X-Mailgun-Tag was left out');
    } else if (problem === 'too-long') {
      problems.push(`an X-Mailgun-Tag of ${tag.length} characters was left out: a tag is at most ${MAX_TAG_LENGTH}`);
    } else if (problem === 'characters') {
      problems.push(`X-Mailgun-Tag "${printable(tag)}" was left out: a tag is printable ASCII only`);
    } else if (tags.includes(tag)) {
      continue;
    } else if (tags.length === MAX_TAGS) {
      problems.push(`X-Mailgun-Tag "${tag}" was left out: at most ${MAX_TAGS} tags per message`);
    } else {
      tags.push(tag);
    }
  }
  return { tags, variables: combinedVariables(variablesFields, problems), problems };
}

function combinedVariables(fields: readonly string[], problems: string[]): string | null {
  if (fields.length === 0) return null;
  // No prototype: a "__proto__" key is kept as data, not taken as the object's prototype.
  const combined = Object.create(null) as Record<string, unknown>;
  for (const field of fields) {
    let value: unknown;
    try {
      value = JSON.parse(field);
    } catch {
      problems.push('X-Mailgun-Variables was left out: a field is not valid JSON; send one JSON object per field, e.g. {"order_id": "123"}');
      return null;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push('X-Mailgun-Variables was left out: a field is JSON but not an object; send one JSON object per field, e.g. {"order_id": "123"}');
      return null;
    }
    Object.assign(combined, value);
  }
  const text = JSON.stringify(combined);
  if (Buffer.byteLength(text) > MAX_VARIABLES_BYTES) {
    problems.push(`X-Mailgun-Variables was left out: ${Buffer.byteLength(text)} bytes of JSON, more than ${MAX_VARIABLES_BYTES}`);
    return null;
  }
  return Object.keys(combined).length === 0 ? null : text;
}

/** A tag as a log line can show it: control characters as \\xNN, cut to 64 characters. */
function printable(tag: string): string {
  // eslint-disable-next-line no-control-regex
  return tag.slice(0, 64).replace(/[\x00-\x1f\x7f-\uffff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
