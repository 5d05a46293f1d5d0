/**
 * The first field of each wanted name in a message's header section: names compared in lower case,
 * folded lines joined with a space, values trimmed. Reading stops at the empty line that ends the
 * header section, so a line of the body is never taken for a field. The caller decides the
 * charset and how much of the message to read (and so bounds the loop).
 */
export function firstFieldValues(section: string, wanted: ReadonlySet<string>): Map<string, string> {
  const found = new Map<string, string>();
  if (wanted.size === 0) return found;
  let name: string | null = null;
  let value = '';
  const keep = (): void => {
    if (name !== null && wanted.has(name) && !found.has(name)) found.set(name, value.trim());
  };
  for (const line of section.split(/\r?\n/)) {
    if (line === '') break;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      value += ` ${line.trim()}`;
      continue;
    }
    keep();
    const colon = line.indexOf(':');
    name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : null;
    value = colon > 0 ? line.slice(colon + 1) : '';
  }
  keep();
  return found;
}
