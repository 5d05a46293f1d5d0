/**
 * The 17 bounce categories (PowerMTA's set, which KumoMTA also speaks) and the hard/soft split
 * from DESIGN.md. A category says *why* a delivery failed; its type says whether the address
 * itself is the problem (hard: suppress it once the failure is permanent) or not (soft: never
 * changes the address's status).
 */

export const HARD_CATEGORIES = [
  'bad-domain',
  'bad-mailbox',
  'inactive-mailbox',
  'invalid-sender',
  'policy-related',
  'relaying-issues',
  'routing-errors',
  'spam-related',
] as const;

export const SOFT_CATEGORIES = [
  'message-expired',
  'no-answer-from-host',
  'other',
  'quota-issues',
  'bad-configuration',
  'bad-connection',
  'content-related',
  'protocol-errors',
  'virus-related',
] as const;

export const CATEGORIES = [...HARD_CATEGORIES, ...SOFT_CATEGORIES] as const;

export type Category = (typeof CATEGORIES)[number];

/** `temporary`: 4xx / 4.x.x, worth retrying. `permanent`: 5xx / 5.x.x, never retried. */
export type Severity = 'permanent' | 'temporary';

export type BounceType = 'hard' | 'soft';

const HARD = new Set<Category>(HARD_CATEGORIES);
const KNOWN = new Set<string>(CATEGORIES);

export function typeOfCategory(category: Category): BounceType {
  return HARD.has(category) ? 'hard' : 'soft';
}

export function isCategory(value: string): value is Category {
  return KNOWN.has(value);
}
