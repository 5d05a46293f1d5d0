import { badRequest } from './api-errors.js';

/** No request of the API nests deeper than a list of objects; room to spare, and no deeper. */
export const MAX_JSON_DEPTH = 16;

/**
 * Parses a JSON request body after a linear scan of its nesting: a body of `[[[[…` is refused
 * before JSON.parse spends its time (or its stack) on it.
 */
export function parseJsonBody(text: string): unknown {
  if (text === '') return undefined;
  const depth = nestingOver(text, MAX_JSON_DEPTH);
  if (depth !== null) throw badRequest(`the JSON body nests deeper than ${MAX_JSON_DEPTH} levels (at character ${depth}); send a list of flat objects`);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw badRequest(`the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** The offset where the nesting of objects and lists first goes over `limit`, or null. */
function nestingOver(text: string, limit: number): number | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return i;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return null;
}
