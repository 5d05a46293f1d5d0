/**
 * A minimal raw-socket SMTP client and the load generator built on it.
 *
 * Deliberately not nodemailer: on a 2-core box the load generator shares the CPU with the relay,
 * so every microsecond the client spends is a microsecond the relay does not get. This client
 * keeps per-message work to a string concatenation, one corked write and a few indexOf calls.
 */
import { getMaxListeners, setMaxListeners } from 'node:events';
import { connect, type Socket } from 'node:net';

const HOST = '127.0.0.1';
const SENDER = 'bench@example.com';
const EHLO_NAME = 'bench.example.com';
const END_OF_DATA = '\r\n.\r\n';
/** The CRLF of END_OF_DATA that belongs to the message's last line. */
const END_OF_DATA_LINE_BREAK = 2;
/** How many failure texts to keep for the report; the counts are kept for all of them. */
const FAILURE_EXAMPLES = 5;
/** The header the end-to-end benchmark finds in what the sink receives, to match it to its 250. */
export const BENCH_ID_HEADER = 'X-Bench-Id';

/**
 * Milliseconds on the monotonic clock (CLOCK_MONOTONIC through libuv), which every process on
 * the machine shares: a time taken here and one taken in the sink process can be subtracted.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface SmtpReply {
  code: number;
  /** Every line of the reply, joined with "\n" (multi-line replies keep all their lines). */
  text: string;
}

/**
 * Turns the server's byte stream into whole replies, in order. A reply is one or more lines
 * "ddd-text" ending with a line "ddd text" (RFC 5321 4.2.1).
 */
class ReplyReader {
  private buffered = '';
  private replyLines: string[] = [];
  private readonly unclaimed: SmtpReply[] = [];
  private readonly waiting: Array<{ resolve: (reply: SmtpReply) => void; reject: (error: Error) => void }> = [];
  private closedWith: Error | null = null;

  constructor(socket: Socket) {
    // Replies are ASCII; latin1 decoding cannot fail and is the cheapest.
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.consume(chunk));
    socket.on('error', (error: Error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  next(): Promise<SmtpReply> {
    const ready = this.unclaimed.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private consume(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) !== -1) {
      const end = newline > 0 && this.buffered.charCodeAt(newline - 1) === 13 ? newline - 1 : newline;
      const line = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(newline + 1);
      this.replyLines.push(line);
      if (line.charAt(3) === '-') continue;
      const reply = { code: Number.parseInt(line.slice(0, 3), 10) || 0, text: this.replyLines.join('\n') };
      this.replyLines = [];
      this.deliver(reply);
    }
  }

  private deliver(reply: SmtpReply): void {
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(reply);
    else this.unclaimed.push(reply);
  }

  private fail(error: Error): void {
    if (this.closedWith) return;
    this.closedWith = error;
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
  }
}

/** One SMTP session: greeting and EHLO done, ready for transactions. */
export class SmtpSession {
  private constructor(
    private readonly socket: Socket,
    private readonly replies: ReplyReader,
    /** Whether EHLO advertised PIPELINING (RFC 2920), so the envelope can go in one write. */
    readonly pipelining: boolean,
    /** process.hrtime.bigint() just before connect() was called. */
    readonly connectStartedNs: bigint,
    /** process.hrtime.bigint() when the 220 greeting arrived. */
    readonly greetedAtNs: bigint,
  ) {}

  /**
   * Connects, reads the greeting and sends EHLO. An abort of `signal` destroys the socket, so a
   * server that never greets cannot hold the caller past its time limit.
   */
  static async open(port: number, signal?: AbortSignal): Promise<SmtpSession> {
    signal?.throwIfAborted();
    const connectStartedNs = process.hrtime.bigint();
    const socket = connect({ host: HOST, port });
    // The client writes whole commands; Nagle would only add delay between them.
    socket.setNoDelay(true);
    const replies = new ReplyReader(socket);
    const destroy = (): void => {
      socket.destroy();
    };
    signal?.addEventListener('abort', destroy, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
        socket.once('close', () => reject(new Error('connection closed before it was established')));
      });
      expectCode(await replies.next(), 220, 'greeting');
      const greetedAtNs = process.hrtime.bigint();
      socket.write(`EHLO ${EHLO_NAME}\r\n`);
      const ehlo = expectCode(await replies.next(), 250, 'EHLO');
      return new SmtpSession(socket, replies, /^250[- ]PIPELINING\b/im.test(ehlo.text), connectStartedNs, greetedAtNs);
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      signal?.removeEventListener('abort', destroy);
    }
  }

  /** Sends each command and returns their replies in order; pipelined when the server allows it. */
  async commands(lines: string[]): Promise<SmtpReply[]> {
    if (this.pipelining) {
      this.socket.write(lines.join(''));
      return Promise.all(lines.map(() => this.replies.next()));
    }
    const replies: SmtpReply[] = [];
    for (const line of lines) {
      this.socket.write(line);
      replies.push(await this.replies.next());
    }
    return replies;
  }

  /**
   * Writes the message and the end-of-data mark; resolves with the final reply, its latency and
   * when it arrived (process.hrtime.bigint(), the clock of monotonicMs).
   */
  async message(content: string): Promise<{ reply: SmtpReply; latencyNs: bigint; repliedAtNs: bigint }> {
    // One corked write so the terminator leaves in the same segment as the last bytes of the
    // message, as a real client's would; the clock starts as the terminator is handed to the socket.
    this.socket.cork();
    this.socket.write(content);
    const started = process.hrtime.bigint();
    this.socket.write(END_OF_DATA);
    this.socket.uncork();
    const reply = await this.replies.next();
    const repliedAtNs = process.hrtime.bigint();
    return { reply, latencyNs: repliedAtNs - started, repliedAtNs };
  }

  async quit(): Promise<void> {
    try {
      this.socket.write('QUIT\r\n');
      await this.replies.next();
    } catch {
      // The server may close before or instead of answering QUIT; the session is over either way.
    } finally {
      this.socket.destroy();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function expectCode(reply: SmtpReply, code: number, what: string): SmtpReply {
  if (reply.code !== code) throw new Error(`${what}: expected ${code}, got "${reply.text}"`);
  return reply;
}

/**
 * Builds messages of exactly `size` bytes as the server stores them: CRLF lines of printable text,
 * no line starting with "." so no dot-stuffing is needed. The CRLF that ends the last line is the
 * first two bytes of the end-of-data mark, so the text built here is `size - 2` bytes.
 */
export interface MessageOptions {
  /** Start the header with `X-Bench-Id: <sequence>` (the end-to-end benchmark's sink looks for it). */
  benchIdHeader?: boolean;
  /** What the Subject says before the sequence number. */
  subject?: string;
}

export class MessageFactory {
  /** Bodies by length: header lengths vary by a few bytes only, so this stays tiny. */
  private readonly bodies = new Map<number, string>();
  private readonly subject: string;
  private readonly benchIdHeader: boolean;

  constructor(
    private readonly size: number,
    options: MessageOptions = {},
  ) {
    this.subject = options.subject ?? 'Rebound submission benchmark message';
    this.benchIdHeader = options.benchIdHeader ?? false;
  }

  build(sequence: number, recipients: string[]): string {
    const headers =
      // First, so it sits right after the Received header the relay puts in front.
      (this.benchIdHeader ? `${BENCH_ID_HEADER}: ${sequence}\r\n` : '') +
      `From: Rebound Bench <${SENDER}>\r\n` +
      // Folded, one recipient per line: submission refuses lines over 998 octets (RFC 5321).
      `To: ${recipients.join(',\r\n ')}\r\n` +
      `Subject: ${this.subject} ${sequence}\r\n` +
      `Message-ID: <bench-${sequence}-${process.pid}@${EHLO_NAME}>\r\n` +
      `Date: ${new Date().toUTCString().replace('GMT', '+0000')}\r\n` +
      '\r\n';
    return headers + this.body(Math.max(0, this.size - END_OF_DATA_LINE_BREAK - headers.length));
  }

  private body(length: number): string {
    let body = this.bodies.get(length);
    if (body === undefined) {
      body = bodyText(length);
      this.bodies.set(length, body);
    }
    return body;
  }
}

const PROSE =
  'Rebound accepts mail over SMTP and stores every message durably before it answers 250. ' +
  'This text only fills the message to the requested size; it has periods, commas and digits 0123456789 ' +
  'so it looks like ordinary mail to the parsers on the way. ';

/** `length` bytes of 78-character lines; the last line has no CRLF (the end-of-data mark adds it). */
function bodyText(length: number): string {
  const lineLength = 78;
  const lines: string[] = [];
  let remaining = length;
  let offset = 0;
  const nextText = (count: number): string => {
    let text = '';
    while (text.length < count) {
      text += PROSE.slice(offset, offset + count - text.length);
      offset = (offset + count) % PROSE.length;
    }
    // Never start a line with "." or a space (a leading space would make it a folded header-like line).
    return text.replace(/^[. ]/, 'x');
  };
  while (remaining > lineLength + 2) {
    lines.push(`${nextText(lineLength)}\r\n`);
    remaining -= lineLength + 2;
  }
  lines.push(nextText(remaining));
  return lines.join('');
}

export type FailureStage = 'MAIL' | 'RCPT' | 'DATA' | 'final' | 'connection';

export interface FailureSummary {
  total: number;
  byStage: Record<FailureStage, number>;
  /** The first few failure texts, "stage: reply". */
  examples: string[];
}

export interface PhaseResult {
  /** Messages whose final reply was 250. */
  accepted: number;
  /** Messages that got a reply other than 250 at any step, or lost their connection. */
  failed: number;
  failures: FailureSummary;
  /** End of DATA to 250, in milliseconds, one per accepted message, unsorted. */
  latenciesMs: Float64Array;
  /**
   * When each message got its 250 (monotonicMs), indexed by sequence - firstSequence;
   * NaN for messages that were not accepted or not sent.
   */
  acceptedAtMs: Float64Array;
  /** monotonicMs when the phase started sending. */
  startedAtMs: number;
  elapsedSeconds: number;
  /** True when the time limit stopped the phase before every message was sent. */
  aborted: boolean;
  /** With one connection per message, what the connections cost; null when connections are reused. */
  perConnection: PerConnectionTimes | null;
}

/** Timings that exist only when every message opens its own connection. */
export interface PerConnectionTimes {
  /** Connections that reached EHLO's 250 (one per message sent). */
  connections: number;
  /** Whether every one of them advertised PIPELINING; null when none was opened. */
  pipelining: boolean | null;
  /** connect() to the 220 greeting, in milliseconds, one per connection, unsorted. */
  connectToGreetingMs: Float64Array;
  /** connect() to the 250 that accepted the message, one per accepted message, unsorted. */
  connectToAcceptedMs: Float64Array;
}

export interface LoadSettings {
  recipients: number;
  messages: MessageFactory;
  /** The envelope (and To:) recipients of message `sequence`; default rcpt-<sequence>-<k>@example.net. */
  recipientsFor?: (sequence: number) => string[];
}

function emptyFailures(): FailureSummary {
  return { total: 0, byStage: { MAIL: 0, RCPT: 0, DATA: 0, final: 0, connection: 0 }, examples: [] };
}

function recordFailure(failures: FailureSummary, stage: FailureStage, text: string): void {
  failures.total++;
  failures.byStage[stage]++;
  if (failures.examples.length < FAILURE_EXAMPLES) failures.examples.push(`${stage}: ${text}`);
}

/** Opens `count` sessions at once; if any fails, closes the others and throws. */
export async function openSessions(port: number, count: number): Promise<SmtpSession[]> {
  const opened = await Promise.allSettled(Array.from({ length: count }, () => SmtpSession.open(port)));
  const sessions = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const firstError = opened.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (firstError) {
    for (const session of sessions) session.destroy();
    throw new Error(`could not open ${count - sessions.length} of ${count} SMTP sessions: ${String(firstError.reason)}`);
  }
  return sessions;
}

type Outcome = { accepted: true; latencyMs: number; acceptedAtMs: number } | { accepted: false; stage: FailureStage; text: string };

/** One mail transaction: pipelined envelope, then the message if DATA got 354. */
async function sendOne(session: SmtpSession, sequence: number, settings: LoadSettings): Promise<Outcome> {
  const recipients = settings.recipientsFor
    ? settings.recipientsFor(sequence)
    : Array.from({ length: settings.recipients }, (_, k) => `rcpt-${sequence}-${k}@example.net`);
  const replies = await session.commands([
    `MAIL FROM:<${SENDER}>\r\n`,
    ...recipients.map((address) => `RCPT TO:<${address}>\r\n`),
    'DATA\r\n',
  ]);
  const envelopeFailure = firstEnvelopeFailure(replies);
  const dataReply = replies[replies.length - 1];
  if (dataReply === undefined || dataReply.code !== 354) {
    // No 354 means the server is not reading a message; reset so the session can go on.
    await session.commands(['RSET\r\n']);
    return envelopeFailure ?? { accepted: false, stage: 'DATA', text: dataReply?.text ?? '(no reply)' };
  }
  const { reply, latencyNs, repliedAtNs } = await session.message(settings.messages.build(sequence, recipients));
  // A refused RCPT with an accepted message still counts as a failure: not everyone got it.
  if (reply.code !== 250) return { accepted: false, stage: 'final', text: reply.text };
  if (envelopeFailure) return envelopeFailure;
  return { accepted: true, latencyMs: Number(latencyNs) / 1e6, acceptedAtMs: Number(repliedAtNs) / 1e6 };
}

function firstEnvelopeFailure(replies: SmtpReply[]): Outcome | null {
  const [mail, ...rest] = replies;
  if (mail && mail.code !== 250) return { accepted: false, stage: 'MAIL', text: mail.text };
  const rcpt = rest.slice(0, -1).find((reply) => reply.code !== 250);
  return rcpt ? { accepted: false, stage: 'RCPT', text: rcpt.text } : null;
}

/**
 * Sends `total` messages over the sessions, each session taking the next message number as soon
 * as its previous transaction has its final reply (one transaction in flight per session).
 * `firstSequence` keeps recipient addresses and Message-IDs unique across phases.
 */
export async function runPhase(
  sessions: SmtpSession[],
  total: number,
  firstSequence: number,
  settings: LoadSettings,
  signal: AbortSignal,
): Promise<PhaseResult> {
  const latencies = new Float64Array(total);
  const acceptedAtMs = new Float64Array(total).fill(Number.NaN);
  const failures = emptyFailures();
  let claimed = 0;
  let accepted = 0;
  const started = process.hrtime.bigint();

  const worker = async (session: SmtpSession): Promise<void> => {
    while (claimed < total && !signal.aborted) {
      const sequence = firstSequence + claimed++;
      let outcome: Outcome;
      try {
        outcome = await sendOne(session, sequence, settings);
      } catch (error) {
        // An abort destroys the sockets on purpose; that message is unfinished, not failed.
        if (signal.aborted) return;
        recordFailure(failures, 'connection', (error as Error).message);
        return;
      }
      if (outcome.accepted) {
        latencies[accepted++] = outcome.latencyMs;
        acceptedAtMs[sequence - firstSequence] = outcome.acceptedAtMs;
      } else recordFailure(failures, outcome.stage, outcome.text);
    }
  };

  // Workers wait on replies; destroying the sockets is what wakes them when time is up.
  const destroyAll = (): void => sessions.forEach((session) => session.destroy());
  signal.addEventListener('abort', destroyAll, { once: true });
  try {
    await Promise.all(sessions.map(worker));
  } finally {
    signal.removeEventListener('abort', destroyAll);
  }
  return {
    accepted,
    failed: failures.total,
    failures,
    latenciesMs: latencies.subarray(0, accepted),
    acceptedAtMs,
    startedAtMs: Number(started) / 1e6,
    elapsedSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    aborted: signal.aborted,
    perConnection: null,
  };
}

function nanosecondsToMs(ns: bigint): number {
  return Number(ns) / 1e6;
}

/**
 * Sends `total` messages as apps without a connection pool do (nodemailer without `pool`,
 * PHPMailer, smtplib, a cron job): for every message a new connection, greeting, EHLO, one
 * transaction, QUIT, close. `concurrency` workers do this side by side. Bounded by `total` and by
 * `signal`, whose abort destroys whatever connections are open.
 */
export async function runPerMessagePhase(
  port: number,
  concurrency: number,
  total: number,
  firstSequence: number,
  settings: LoadSettings,
  signal: AbortSignal,
): Promise<PhaseResult> {
  const latencies = new Float64Array(total);
  const connectToAccepted = new Float64Array(total);
  const connectToGreeting = new Float64Array(total);
  const acceptedAtMs = new Float64Array(total).fill(Number.NaN);
  const failures = emptyFailures();
  const open = new Set<SmtpSession>();
  let claimed = 0;
  let accepted = 0;
  let connections = 0;
  let pipelining: boolean | null = null;
  const started = process.hrtime.bigint();

  const worker = async (): Promise<void> => {
    while (claimed < total && !signal.aborted) {
      const sequence = firstSequence + claimed++;
      let session: SmtpSession;
      try {
        session = await SmtpSession.open(port, signal);
      } catch (error) {
        if (signal.aborted) return;
        // A refused or dropped connection costs this message only; the next one connects anew.
        recordFailure(failures, 'connection', (error as Error).message);
        continue;
      }
      connectToGreeting[connections++] = nanosecondsToMs(session.greetedAtNs - session.connectStartedNs);
      pipelining = (pipelining ?? true) && session.pipelining;
      open.add(session);
      try {
        const outcome = await sendOne(session, sequence, settings);
        if (outcome.accepted) {
          latencies[accepted] = outcome.latencyMs;
          connectToAccepted[accepted] = outcome.acceptedAtMs - nanosecondsToMs(session.connectStartedNs);
          accepted++;
          acceptedAtMs[sequence - firstSequence] = outcome.acceptedAtMs;
        } else recordFailure(failures, outcome.stage, outcome.text);
        // The app waits for 221 before its next message, as smtplib's quit() and PHPMailer's smtpClose() do.
        await session.quit();
      } catch (error) {
        session.destroy();
        if (signal.aborted) return;
        recordFailure(failures, 'connection', (error as Error).message);
      } finally {
        open.delete(session);
      }
    }
  };

  const destroyAll = (): void => open.forEach((session) => session.destroy());
  // Every connection being opened listens on the signal too: one per worker, plus destroyAll.
  if (getMaxListeners(signal) < concurrency + 1) setMaxListeners(concurrency + 1, signal);
  signal.addEventListener('abort', destroyAll, { once: true });
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    signal.removeEventListener('abort', destroyAll);
  }
  return {
    accepted,
    failed: failures.total,
    failures,
    latenciesMs: latencies.subarray(0, accepted),
    acceptedAtMs,
    startedAtMs: Number(started) / 1e6,
    elapsedSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    aborted: signal.aborted,
    perConnection: {
      connections,
      pipelining,
      connectToGreetingMs: connectToGreeting.subarray(0, connections),
      connectToAcceptedMs: connectToAccepted.subarray(0, accepted),
    },
  };
}

/** How the load generator uses connections: a few long sessions, or a new one for every message. */
export type ConnectionMode = 'reused' | 'per-message';
export const CONNECTION_MODES: readonly ConnectionMode[] = ['reused', 'per-message'];

/** The load generator's clients, whichever the connection mode; the benchmarks run phases on it. */
export interface LoadClients {
  readonly mode: ConnectionMode;
  readonly concurrency: number;
  /** Sends `total` messages numbered from `firstSequence`, `concurrency` at a time. */
  run(total: number, firstSequence: number, settings: LoadSettings, signal: AbortSignal): Promise<PhaseResult>;
  /** Whether every session so far advertised PIPELINING; null before any was opened. */
  pipelining(): boolean | null;
  /** QUIT on the sessions still open (reused mode; per-message sessions are already closed). */
  close(): Promise<void>;
}

/**
 * Reused: opens `concurrency` sessions now (throws if any fails) and sends every phase over them.
 * Per-message: opens nothing now; every message of every phase opens and closes its own.
 */
export async function openLoadClients(mode: ConnectionMode, port: number, concurrency: number): Promise<LoadClients> {
  if (mode === 'reused') {
    const sessions = await openSessions(port, concurrency);
    return {
      mode,
      concurrency,
      run: (total, firstSequence, settings, signal) => runPhase(sessions, total, firstSequence, settings, signal),
      pipelining: () => sessions.every((session) => session.pipelining),
      close: async () => {
        await Promise.all(sessions.map((session) => session.quit()));
      },
    };
  }
  let pipelining: boolean | null = null;
  return {
    mode,
    concurrency,
    run: async (total, firstSequence, settings, signal) => {
      const result = await runPerMessagePhase(port, concurrency, total, firstSequence, settings, signal);
      const seen = result.perConnection?.pipelining ?? null;
      if (seen !== null) pipelining = (pipelining ?? true) && seen;
      return result;
    },
    pipelining: () => pipelining,
    close: () => Promise.resolve(),
  };
}
