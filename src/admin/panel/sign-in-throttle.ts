/** Failed sign-ins from one address within this window count together. */
const WINDOW_MS = 15 * 60 * 1000;
/** After this many failures in the window, the address may not try again until the window ends. */
const MAX_FAILURES = 10;
/** The answer to a failed sign-in waits this long, doubled with each failure, up to MAX_DELAY_MS. */
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8_000;
/** Addresses tracked at most (an attacker with many addresses must not grow memory without bound). */
const MAX_TRACKED = 10_000;

interface Failures {
  count: number;
  firstAt: number;
}

/**
 * Slows down guessing at the panel's sign-in: each failure from an address is answered later
 * than the one before (0.5 s, 1 s, 2 s ... 8 s), and after 10 failures in 15 minutes the address is
 * refused (429) until the 15 minutes are over. A success clears the address's count. Tokens are at
 * least 24 characters, so this is a second line, after the token's own length.
 */
export class SignInThrottle {
  private readonly failures = new Map<string, Failures>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Milliseconds until this address may try again, or 0 when it may now. */
  lockedFor(address: string): number {
    const entry = this.current(address);
    if (!entry || entry.count < MAX_FAILURES) return 0;
    return entry.firstAt + WINDOW_MS - this.now();
  }

  /** Records a failure; returns how long to wait before answering it. */
  failed(address: string): number {
    const entry = this.current(address) ?? { count: 0, firstAt: this.now() };
    entry.count++;
    this.failures.delete(address);
    this.failures.set(address, entry);
    if (this.failures.size > MAX_TRACKED) this.failures.delete(this.failures.keys().next().value as string);
    return Math.min(FIRST_DELAY_MS * 2 ** (entry.count - 1), MAX_DELAY_MS);
  }

  succeeded(address: string): void {
    this.failures.delete(address);
  }

  private current(address: string): Failures | null {
    const entry = this.failures.get(address);
    if (!entry) return null;
    if (this.now() - entry.firstAt > WINDOW_MS) {
      this.failures.delete(address);
      return null;
    }
    return entry;
  }
}
