import type { AllowlistEntry, SuppressionEntry, SuppressionType } from './lists.js';

/**
 * One change to the suppression lists or the allowlist, as it travels between relays through
 * the shared store (src/shared/). Each carries the resulting state, not a delta: applied twice,
 * or after the node's own local change, it leaves the same rows, so every node that applies the
 * shared log in its order ends with the same lists.
 */
export type ListChange =
  | { kind: 'suppress'; entry: SuppressionEntry; actor: string; why: string | null }
  | { kind: 'unsuppress'; address: string; type: SuppressionType; actor: string; reason: string | null }
  | { kind: 'allow'; entry: AllowlistEntry }
  | { kind: 'disallow'; value: string; actor: string; reason: string | null };
