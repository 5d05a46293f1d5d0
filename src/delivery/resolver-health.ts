import type { Resolver } from 'node:dns/promises';
import type { Classification } from '../bounces/classifier.js';
import type { Logger } from '../logger.js';
import { localFailure } from './failure.js';

export interface ResolverHealthSettings {
  /** Names that must exist (delivery.dns.canaries); none: the resolver is always believed. */
  canaries: readonly string[];
  /** While broken, how often the canaries are asked again (delivery.dns.canaryRecheckSeconds). */
  recheckMs: number;
}

/** The resolver's health as /healthz and /metrics show it. */
export interface ResolverStatus {
  /** false only once the canaries were asked and none resolved; true before the first check. */
  healthy: boolean;
  /** When the canaries started failing (ISO), while they still do. */
  brokenSince: string | null;
  servers: string[];
  canaries: string[];
  /** The last canary check (ISO); null before the first. */
  checkedAt: string | null;
  /** One line for the operator while broken: what failed, via which servers. */
  problem: string | null;
}

/** A broken resolver is logged at most this often while it stays broken. */
const LOG_EVERY_MS = 60_000;

type DnsError = Error & { code?: string };

/**
 * Whether the delivery resolver can be believed when it says a domain does not exist. A
 * resolver that answers NXDOMAIN for every name (a sandbox, a captive or split-horizon resolver,
 * an outage) would otherwise bounce, and suppress, every recipient. Canary names that must exist
 * are asked only when a lookup would fail (never per message); if none of them resolves, the
 * resolver is broken: such failures are deferred, not bounced, until the canaries resolve again
 * (asked every recheckMs while broken, so delivery and /healthz recover by themselves).
 */
export class ResolverHealth {
  private verdict: { healthy: boolean; startedAt: number; doneAt: number; checkedAt: Date } | null = null;
  /** The check under way; at most one at a time. */
  private probe: { startedAt: number; healthy: Promise<boolean> } | null = null;
  private brokenSince: Date | null = null;
  /** Each canary's answer in the last failed check, "gmail.com: ENOTFOUND". */
  private canaryErrors: string[] = [];
  private loggedAt = 0;
  private deferredSinceLog = 0;
  private recheck: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly checkedListeners: Array<() => void> = [];

  constructor(
    private readonly resolver: Resolver,
    private readonly settings: ResolverHealthSettings,
    private readonly log: Logger,
  ) {}

  /**
   * Whether the resolver can be believed about an answer it gave at `answeredAt`
   * (performance.now()). The canaries must resolve in a check that started after that answer,
   * so a resolver that broke a moment ago is caught before its first false NXDOMAIN bounces
   * anyone; a healthy verdict is never reused for later answers. Callers share checks: every
   * answer given before a check started is judged by it. A failed check stands for recheckMs
   * (it only defers mail).
   */
  async believes(answeredAt: number): Promise<boolean> {
    if (this.settings.canaries.length === 0) return true;
    const verdict = this.verdict;
    if (verdict && !verdict.healthy && performance.now() - verdict.doneAt < this.settings.recheckMs) return false;
    if (verdict?.healthy && verdict.startedAt >= answeredAt) return true;
    const probe = this.probe;
    if (probe && probe.startedAt < answeredAt) {
      // Started before this answer came: its "broken" holds for it, its "healthy" says nothing.
      if (!(await probe.healthy)) return false;
      return this.believes(answeredAt);
    }
    return this.askNow();
  }

  /** The check under way, or a new one. */
  private askNow(): Promise<boolean> {
    if (this.probe) return this.probe.healthy;
    const startedAt = performance.now();
    // Cleared before its callers go on, so a caller that needs a newer check starts one.
    const healthy = this.check(startedAt).finally(() => {
      this.probe = null;
    });
    this.probe = { startedAt, healthy };
    return healthy;
  }

  /**
   * What a failure that rests on this resolver's word becomes while it looks broken: a
   * temporary failure (retried, never suppressed) that says why the mail waits.
   */
  deferral(failure: Classification): Classification {
    this.deferredSinceLog++;
    return localFailure('temporary', 'routing-errors', `${this.problem()}; deferred, not bounced: ${failure.text}`, null, '4.4.3');
  }

  status(): ResolverStatus {
    const broken = this.brokenSince !== null;
    return {
      healthy: !broken,
      brokenSince: this.brokenSince?.toISOString() ?? null,
      servers: this.servers(),
      canaries: [...this.settings.canaries],
      checkedAt: this.verdict?.checkedAt.toISOString() ?? null,
      problem: broken ? this.problem() : null,
    };
  }

  stop(): void {
    this.stopped = true;
    if (this.recheck) clearTimeout(this.recheck);
    this.recheck = null;
  }

  private servers(): string[] {
    return this.resolver.getServers();
  }

  private problem(): string {
    const servers = this.servers();
    const via = servers.length > 0 ? servers.join(', ') : "the system's resolver";
    return `DNS resolver looks broken since ${this.brokenSince?.toISOString() ?? 'now'} (canaries ${this.settings.canaries.join(', ')} did not resolve via ${via})`;
  }

  /** Called after every check with its verdict (the delivery thread sends the status to the main thread). */
  onChecked(listener: () => void): void {
    this.checkedListeners.push(listener);
  }

  private async check(startedAt: number): Promise<boolean> {
    const errors = await this.askCanaries();
    const now = new Date();
    this.verdict = { healthy: errors === null, startedAt, doneAt: performance.now(), checkedAt: now };
    const brokenSince = this.brokenSince;
    const deferred = this.deferredSinceLog;
    if (errors === null) {
      this.brokenSince = null;
      this.deferredSinceLog = 0;
    } else {
      this.canaryErrors = errors;
      if (!this.brokenSince) {
        this.brokenSince = now;
        this.loggedAt = 0;
      }
    }
    // The listeners first, then the log line: on the delivery thread the status reaches the main
    // thread's /healthz before the line saying so reaches the log (both go by one message port).
    for (const listener of this.checkedListeners) listener();
    if (errors === null) {
      if (brokenSince) {
        this.log.warn(
          { servers: this.servers(), canaries: this.settings.canaries, brokenSince: brokenSince.toISOString(), deferred },
          'DNS resolver answers the canaries again; deferred mail is sent at its next retry',
        );
      }
      return true;
    }
    this.logBroken(now.getTime());
    this.scheduleRecheck();
    return false;
  }

  /** null when at least one canary has an MX or A record; else each canary's error. */
  private async askCanaries(): Promise<string[] | null> {
    const errors = new Map<string, string>();
    const failed = (name: string) => (error: unknown) => {
      if (!errors.has(name)) errors.set(name, (error as DnsError).code ?? (error as Error).message);
      throw error;
    };
    const answers = this.settings.canaries.flatMap((name) => [
      this.resolver.resolveMx(name).then(nonEmpty).catch(failed(name)),
      this.resolver.resolve4(name).then(nonEmpty).catch(failed(name)),
    ]);
    try {
      await Promise.any(answers);
      return null;
    } catch {
      return this.settings.canaries.map((name) => `${name}: ${errors.get(name) ?? 'no answer'}`);
    }
  }

  private logBroken(now: number): void {
    if (now - this.loggedAt < LOG_EVERY_MS) return;
    this.loggedAt = now;
    this.log.error(
      {
        servers: this.servers(),
        canaries: this.canaryErrors,
        brokenSince: this.brokenSince?.toISOString(),
        deferred: this.deferredSinceLog,
      },
      `${this.problem()}: mail that would bounce for a missing domain is deferred, not bounced, until they resolve again; fix the resolver (delivery.dns.servers, /etc/resolv.conf) or set delivery.dns.canaries to names this resolver must know`,
    );
    this.deferredSinceLog = 0;
  }

  private scheduleRecheck(): void {
    if (this.stopped || this.recheck) return;
    this.recheck = setTimeout(() => {
      this.recheck = null;
      void this.askNow();
    }, this.settings.recheckMs);
    this.recheck.unref();
  }
}

function nonEmpty<T>(records: T[]): T[] {
  if (records.length === 0) throw Object.assign(new Error('no record'), { code: 'ENODATA' });
  return records;
}
