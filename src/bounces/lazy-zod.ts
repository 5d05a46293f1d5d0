/**
 * zod, loaded on first use. The shipped rules and patterns are validated when the project is built
 * (shipped-data.ts), so a `rebound parse` never needs zod; an operator's own file still gets the
 * full check with clear errors, and only then pays the ~90 ms zod takes to load. Loading has to be
 * synchronous (the loaders are), hence require() rather than import().
 */
import { createRequire } from 'node:module';
import type { z } from 'zod';

let loaded: typeof z | undefined;

export function lazyZod(): typeof z {
  loaded ??= (createRequire(import.meta.url)('zod') as typeof import('zod')).z;
  return loaded;
}
