import type { BounceType, Severity } from '../bounces/categories.js';

/**
 * What a permanent failure is called in events.reason: `bounced` when the address goes on the
 * bounces list (or the failure is soft and says nothing about the address), `blocked` when the
 * category is hard but not one of suppression.categories. A block (SendGrid's word) is a refusal
 * of the message or the sender (an IP on a blocklist, DMARC, a content filter): never retried,
 * like any hard failure, but the address stays sendable, so one block at a provider does not
 * wipe that provider's recipients off the list.
 */
export type PermanentFailureReason = 'bounced' | 'blocked';

/** The suppression rule of DESIGN.md, from config `suppression.categories`; one for both paths. */
export class SuppressionPolicy {
  private readonly categories: ReadonlySet<string>;

  constructor(categories: readonly string[]) {
    this.categories = new Set(categories);
  }

  /** The event reason of a failure we will not retry. */
  reasonOf(failure: { category: string; type: BounceType }): PermanentFailureReason {
    return failure.type === 'hard' && !this.categories.has(failure.category) ? 'blocked' : 'bounced';
  }

  /**
   * Whether the failure puts the address on the bounces list: its category is listed and the
   * remote side called it permanent itself (a DSN that gave up after 4xx replies is final for
   * the message, not proof about the address).
   */
  suppresses(failure: { category: string; severity: Severity }): boolean {
    return failure.severity === 'permanent' && this.categories.has(failure.category);
  }
}
