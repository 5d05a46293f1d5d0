/** Start times within the last `windowMs`, oldest first; trimmed as time passes. */
export class SlidingWindow {
  private readonly starts: number[] = [];
  private head = 0;

  constructor(private readonly windowMs: number) {}

  /** Starts within the window ending at `now`. */
  count(now: number): number {
    while (this.head < this.starts.length && (this.starts[this.head] ?? 0) <= now - this.windowMs) this.head++;
    if (this.head > 1024 && this.head * 2 > this.starts.length) {
      this.starts.splice(0, this.head);
      this.head = 0;
    }
    return this.starts.length - this.head;
  }

  /** When the start that makes room for one more leaves the window, given `limit`. */
  freeAt(limit: number): number {
    const index = this.starts.length - limit;
    return (this.starts[Math.max(this.head, index)] ?? 0) + this.windowMs;
  }

  add(now: number): void {
    this.starts.push(now);
  }
}
