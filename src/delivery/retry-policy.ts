import type { DeliveryConfig } from '../config/schema.js';

export type RetryDecision = { retry: true; at: Date } | { retry: false; reason: string };

/**
 * When to try a temporarily failed recipient again. The wait after the n-th attempt is
 * scheduleSeconds[n-1] (the last entry repeats), moved by up to ±jitter of itself so that a burst
 * of deferrals to one domain does not come back as one burst. Gives up after maxAttempts
 * attempts, or when the next try would fall after maxAgeSeconds from acceptance.
 */
export function nextRetry(retry: DeliveryConfig['retry'], attemptsMade: number, receivedAt: Date, now: Date, random: () => number = Math.random): RetryDecision {
  if (attemptsMade >= retry.maxAttempts) return { retry: false, reason: `gave up after ${attemptsMade} attempts` };
  const schedule = retry.scheduleSeconds;
  const base = schedule[Math.min(attemptsMade, schedule.length) - 1] ?? schedule[0] ?? 0;
  const jittered = base * (1 + retry.jitter * (2 * random() - 1));
  const at = new Date(now.getTime() + Math.max(0, jittered) * 1000);
  if (at.getTime() - receivedAt.getTime() > retry.maxAgeSeconds * 1000) {
    return { retry: false, reason: `gave up after ${attemptsMade} attempts: the next would be past ${retry.maxAgeSeconds} s from acceptance` };
  }
  return { retry: true, at };
}

/** The dispatch-time check: mail older than maxAgeSeconds is not sent at all. */
export function isExpired(retry: DeliveryConfig['retry'], receivedAt: Date, now: Date): boolean {
  return now.getTime() - receivedAt.getTime() > retry.maxAgeSeconds * 1000;
}
