import { createHash } from 'node:crypto';

/**
 * HTML the admin server writes: every value put into a page goes through `html`, which escapes it,
 * so no text from a request (a token, an address, a reason) can become markup or a URL of its own.
 */

/** Markup already escaped (or written here): `html` inserts it as it is. */
export class Html {
  constructor(readonly markup: string) {}
  toString(): string {
    return this.markup;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text as HTML text or as a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c] as string);
}

type Value = string | number | Html | readonly Html[];

/** A template whose values are escaped unless they are Html already. */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    const parts = Array.isArray(value) ? value : [value];
    for (const part of parts) out += part instanceof Html ? part.markup : escapeHtml(String(part));
    out += strings[i + 1] ?? '';
  });
  return new Html(out);
}

/** The one stylesheet of our pages, inline; the Content-Security-Policy allows it by its hash. */
const PAGE_STYLE = 'body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}button{font-size:1em;padding:.5em 1.5em}';

/** `'sha256-…'` for the style-src of the Content-Security-Policy. */
export const PAGE_STYLE_SOURCE = `'sha256-${createHash('sha256').update(PAGE_STYLE).digest('base64')}'`;

/** A whole page: title and body, with the page style. */
export function htmlPage(title: string, body: Html): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title><style>${new Html(PAGE_STYLE)}</style></head><body>${body}</body></html>`.markup;
}
