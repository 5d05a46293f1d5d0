/**
 * What a stored tag (message_tags.tag) is: Mailgun's rules for X-Mailgun-Tag, kept here beside the
 * table so submission (which writes tags) and the bounces report (which filters by them) agree.
 * From Mailgun's documentation: at most 10 tags per message (help.mailgun.com, "Tags"); a tag is
 * ASCII, at most 128 characters, case-insensitive (documentation.mailgun.com, "Tags").
 */
export const MAX_TAGS = 10;
export const MAX_TAG_LENGTH = 128;

// Printable ASCII: no control characters (a CR or NUL in a tag would reach CSV cells and logs).
const TAG_CHARACTERS = /^[\x20-\x7e]+$/;

/** The tag as stored: trimmed, lower case (Mailgun's tags are case-insensitive). */
export function tagKey(value: string): string {
  return value.trim().toLowerCase();
}

/** Why `tag` (a tagKey) cannot be stored, or null when it can. */
export function tagProblem(tag: string): 'empty' | 'too-long' | 'characters' | null {
  if (tag === '') return 'empty';
  if (tag.length > MAX_TAG_LENGTH) return 'too-long';
  if (!TAG_CHARACTERS.test(tag)) return 'characters';
  return null;
}
