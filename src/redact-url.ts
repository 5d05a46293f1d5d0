/**
 * A URL fit to show (the log, the panel, `rebound config`: a webhook endpoint, the shared store): the user name, the password and every query
 * value become ***, as a receiver's credentials sit in one of those (https://user:pass@host/,
 * ?token=...). The path is kept: it names the endpoint. Not a URL at all: shown as "(not a URL)".
 */
export function redactUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return '(not a URL)';
  }
  if (url.username !== '') url.username = '***';
  if (url.password !== '') url.password = '***';
  if (url.search !== '') {
    const names = [...url.searchParams.keys()];
    url.search = names.map((name) => `${encodeURIComponent(name)}=***`).join('&');
  }
  url.hash = '';
  return url.toString();
}
