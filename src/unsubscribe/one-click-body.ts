/**
 * RFC 8058 §3.1: the one-click POST carries `List-Unsubscribe=One-Click` in its body, as
 * application/x-www-form-urlencoded or multipart/form-data. Only a POST that says so unsubscribes;
 * anything else (an empty POST, a link checker's probe, another form) changes nothing.
 */
export const ONE_CLICK_FIELD = 'List-Unsubscribe';
export const ONE_CLICK_VALUE = 'One-Click';

/** True when the body, of the given Content-Type, is a one-click unsubscribe request. */
export function isOneClickBody(contentType: string | undefined, body: string | undefined): boolean {
  if (body === undefined || contentType === undefined) return false;
  const [mediaType = '', ...params] = contentType.split(';').map((part) => part.trim());
  switch (mediaType.toLowerCase()) {
    case 'application/x-www-form-urlencoded':
      return new URLSearchParams(body).getAll(ONE_CLICK_FIELD).includes(ONE_CLICK_VALUE);
    case 'multipart/form-data': {
      const boundary = params.map((p) => /^boundary=(?:"([^"]+)"|(\S+))$/i.exec(p)).find((m) => m !== null);
      const delimiter = boundary?.[1] ?? boundary?.[2];
      return delimiter !== undefined && multipartFields(body, delimiter, ONE_CLICK_FIELD).includes(ONE_CLICK_VALUE);
    }
    default:
      return false;
  }
}

/**
 * The values of the form fields named `name` in a multipart/form-data body (RFC 7578): enough
 * for one small text field, not a general parser (no files, no nested parts).
 */
function multipartFields(body: string, boundary: string, name: string): string[] {
  const values: string[] = [];
  // Parts sit between "--boundary" lines; the last one is "--boundary--".
  for (const part of body.split(`--${boundary}`).slice(1)) {
    if (part.startsWith('--')) break;
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd === -1) continue;
    const headers = part.slice(0, headerEnd).split('\r\n');
    const disposition = headers.find((line) => /^content-disposition:/i.test(line)) ?? '';
    const field = /;\s*name=(?:"([^"]*)"|([^;\s]+))/i.exec(disposition);
    if ((field?.[1] ?? field?.[2]) !== name) continue;
    values.push(part.slice(headerEnd + 4).replace(/\r\n$/, ''));
  }
  return values;
}
