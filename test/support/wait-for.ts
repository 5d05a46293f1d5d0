/**
 * Polls `read` until `done` holds, for state that other stages change in the background (a
 * recipient's status, a fake MX's mailbox, a PostgreSQL count); fails with the last value seen.
 */
export async function waitFor<T>(what: string, read: () => T | PromiseLike<T>, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
