/**
 * The end-to-end benchmark's destination: a minimal SMTP server on node:net that accepts every
 * message, and the parent's handle on it when it runs in its own process (bench/sink-child.ts).
 *
 * Deliberately not smtp-server: it must never be what limits the measurement. Per message it does
 * a few indexOf calls on the chunks as they arrive and keeps the first few KB (where the
 * X-Bench-Id header is); it never buffers or parses the message itself.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { BenchError } from './relay-process.js';
import { BENCH_ID_HEADER, monotonicMs } from './smtp-load.js';

const HOST = '127.0.0.1';
const SINK_NAME = 'sink.bench.test';
/** Advertised in EHLO; the sink never refuses a size. */
const SIZE_LIMIT = 100 * 1024 * 1024;
const END_OF_DATA = Buffer.from('\r\n.\r\n', 'latin1');
/** The relay puts one Received header (a few hundred bytes) in front; X-Bench-Id comes right after. */
const HEAD_LIMIT = 4096;
/** A command line longer than this without a line break is not SMTP: 500 and close. */
const MAX_COMMAND_LINE = 4096;
const ID_FIELD = `${BENCH_ID_HEADER}: `;
const EHLO_REPLY = `250-${SINK_NAME}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE ${SIZE_LIMIT}\r\n`;

export interface SinkStats {
  connections: number;
  /** Messages received whole (end-of-data seen), with or without a bench id. */
  messages: number;
  /** Messages without an X-Bench-Id header in their first HEAD_LIMIT bytes. */
  unidentified: number;
  /** Message bytes, terminator included. */
  dataBytes: number;
  commands: number;
  /** Commands the sink does not know (answered 502) and over-long lines (answered 500). */
  unknownCommands: number;
}

/** Called once per message, with its X-Bench-Id (-1 when it has none) and when its end arrived. */
export type MessageListener = (benchId: number, receivedAtMs: number) => void;

/** Accepts every message on 127.0.0.1; see the file comment. */
export class SmtpSink {
  readonly stats: SinkStats = { connections: 0, messages: 0, unidentified: 0, dataBytes: 0, commands: 0, unknownCommands: 0 };
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly onMessage: MessageListener) {
    this.server = createServer((socket) => this.accept(socket));
  }

  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, HOST, () => {
        const address = this.server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    this.stats.connections++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const connection = new SinkConnection(socket, this.stats, this.onMessage);
    socket.on('data', (chunk: Buffer) => connection.receive(chunk));
    // A client that resets or vanishes is its own business; the sink just forgets it.
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
    socket.write(`220 ${SINK_NAME} ESMTP bench sink\r\n`);
  }
}

/** One SMTP session: commands (pipelined or not) and messages, each possibly split over chunks. */
class SinkConnection {
  private mode: 'command' | 'data' = 'command';
  /** The start of a command line whose line break has not arrived yet. */
  private partialLine = '';
  private recipients = 0;
  /** In data mode: the last (up to 4) bytes seen, so a terminator split across chunks is found. */
  private tail = '';
  /** In data mode: the first HEAD_LIMIT bytes of the message. */
  private head = '';
  private replies = '';
  private quitting = false;

  constructor(
    private readonly socket: Socket,
    private readonly stats: SinkStats,
    private readonly onMessage: MessageListener,
  ) {}

  receive(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.quitting) {
      offset = this.mode === 'data' ? this.readData(chunk, offset) : this.readCommands(chunk, offset);
    }
    // All replies to what this chunk held go out in one write, in order (RFC 2920).
    if (this.replies) {
      this.socket.write(this.replies);
      this.replies = '';
    }
    if (this.quitting) this.socket.end();
  }

  /** Reads message bytes from `offset`; returns where the message ended, or the chunk's length. */
  private readData(chunk: Buffer, offset: number): number {
    let end = -1;
    if (this.tail) {
      // A terminator that starts in the previous chunk: it ends within this chunk's first 4 bytes.
      const joint = this.tail + chunk.toString('latin1', offset, Math.min(chunk.length, offset + 4));
      const at = joint.indexOf('\r\n.\r\n');
      if (at !== -1) end = offset + at + END_OF_DATA.length - this.tail.length;
    }
    if (end === -1) {
      const at = chunk.indexOf(END_OF_DATA, offset);
      if (at !== -1) end = at + END_OF_DATA.length;
    }
    const stop = end === -1 ? chunk.length : end;
    if (this.head.length < HEAD_LIMIT) this.head += chunk.toString('latin1', offset, Math.min(stop, offset + HEAD_LIMIT - this.head.length));
    this.stats.dataBytes += stop - offset;
    if (end === -1) {
      this.tail = chunk.length - offset >= 4 ? chunk.toString('latin1', chunk.length - 4) : (this.tail + chunk.toString('latin1', offset)).slice(-4);
      return chunk.length;
    }
    const receivedAtMs = monotonicMs();
    this.stats.messages++;
    const benchId = benchIdOf(this.head);
    if (benchId < 0) this.stats.unidentified++;
    this.onMessage(benchId, receivedAtMs);
    this.replies += `250 2.0.0 Ok: queued as S${this.stats.messages}\r\n`;
    this.mode = 'command';
    this.recipients = 0;
    this.head = '';
    this.tail = '';
    return end;
  }

  /** Reads command lines from `offset`; returns where message data starts, or the chunk's length. */
  private readCommands(chunk: Buffer, offset: number): number {
    // Commands are ASCII and latin1 maps bytes 1:1, so positions in `text` are positions in the chunk.
    const text = chunk.toString('latin1', offset);
    let start = 0;
    for (;;) {
      const newline = text.indexOf('\n', start);
      if (newline === -1) {
        this.partialLine += text.slice(start);
        if (this.partialLine.length > MAX_COMMAND_LINE) {
          this.stats.unknownCommands++;
          this.replies += '500 5.5.2 Line too long\r\n';
          this.quitting = true;
        }
        return chunk.length;
      }
      let line = this.partialLine + text.slice(start, newline);
      this.partialLine = '';
      if (line.endsWith('\r')) line = line.slice(0, -1);
      start = newline + 1;
      this.command(line);
      if (this.mode === 'data') return offset + start;
      if (this.quitting) return chunk.length;
    }
  }

  private command(line: string): void {
    this.stats.commands++;
    switch (line.slice(0, 4).toUpperCase()) {
      case 'EHLO':
        this.replies += EHLO_REPLY;
        return;
      case 'HELO':
        this.replies += `250 ${SINK_NAME}\r\n`;
        return;
      case 'MAIL':
        this.recipients = 0;
        this.replies += '250 2.1.0 Ok\r\n';
        return;
      case 'RCPT':
        this.recipients++;
        this.replies += '250 2.1.5 Ok\r\n';
        return;
      case 'DATA':
        if (this.recipients === 0) {
          this.replies += '503 5.5.1 Error: need RCPT command\r\n';
          return;
        }
        this.replies += '354 End data with <CR><LF>.<CR><LF>\r\n';
        this.mode = 'data';
        this.head = '';
        // The CRLF that ended the DATA line: an empty message is just ".\r\n".
        this.tail = '\r\n';
        return;
      case 'RSET':
        this.recipients = 0;
        this.replies += '250 2.0.0 Ok\r\n';
        return;
      case 'NOOP':
        this.replies += '250 2.0.0 Ok\r\n';
        return;
      case 'QUIT':
        this.replies += '221 2.0.0 Bye\r\n';
        this.quitting = true;
        return;
      default:
        this.stats.unknownCommands++;
        this.replies += '502 5.5.2 Error: command not recognized\r\n';
    }
  }
}

/** The X-Bench-Id value in the first bytes of a message, or -1. */
export function benchIdOf(head: string): number {
  let from: number;
  if (head.startsWith(ID_FIELD)) from = ID_FIELD.length;
  else {
    const at = head.indexOf(`\n${ID_FIELD}`);
    if (at === -1) return -1;
    from = at + 1 + ID_FIELD.length;
  }
  // No line end in the kept bytes: the value may be cut short, so it is not trusted.
  const lineEnd = head.indexOf('\r', from);
  if (lineEnd === -1) return -1;
  const text = head.slice(from, lineEnd);
  const id = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  return Number.isSafeInteger(id) ? id : -1;
}

/** Messages between the sink process and its parent. */
export type SinkToParent =
  | { type: 'listening'; port: number }
  | { type: 'received'; ids: number[]; at: number[] }
  | { type: 'stats'; stats: SinkStats };
export type ParentToSink = { type: 'stats' } | { type: 'stop' };

const START_TIMEOUT_MS = 20_000;
const REPLY_TIMEOUT_MS = 10_000;

/**
 * The sink in its own process, so that its work neither waits for the load generator's event
 * loop nor delays it. Both take times from the same monotonic clock (monotonicMs), so a receive
 * time from the sink and a 250 time from the load generator can be subtracted.
 */
export class SinkProcess {
  port = 0;
  /** monotonicMs when each bench id was first received, NaN for ids not (yet) received. */
  readonly receivedAtMs: Float64Array;
  /** Distinct bench ids received. */
  distinct = 0;
  /** Messages received again with an id already seen (the relay delivered twice). */
  duplicates = 0;
  /** Messages with an id outside 0..ids-1, or none. */
  strays = 0;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exited: Promise<void>;
  private waiter: { count: number; resolve: () => void } | null = null;
  private statsWaiter: ((stats: SinkStats) => void) | null = null;

  private constructor(
    private readonly child: ChildProcess,
    ids: number,
  ) {
    this.receivedAtMs = new Float64Array(ids).fill(Number.NaN);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
    child.on('message', (message: SinkToParent) => this.handle(message));
  }

  /** Forks bench/sink-child.ts (with this process's tsx loader) and waits for its port. */
  static async start(ids: number): Promise<SinkProcess> {
    const child = fork(fileURLToPath(new URL('./sink-child.ts', import.meta.url)), [], {
      // stdout stays clean for --json; the sink's own errors go to stderr.
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    const sink = new SinkProcess(child, ids);
    const listening = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new BenchError(`the sink did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      child.on('message', (message: SinkToParent) => {
        if (message.type === 'listening') {
          clearTimeout(timer);
          resolve(message.port);
        }
      });
      void sink.exited.then(() => {
        clearTimeout(timer);
        reject(new BenchError(`the sink exited before listening (code ${String(sink.exit?.code)})`));
      });
    });
    try {
      sink.port = await listening;
    } catch (error) {
      sink.kill();
      throw error;
    }
    return sink;
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Resolves true once `count` distinct ids have arrived, false at the deadline (monotonicMs). */
  waitForDistinct(count: number, deadlineMs: number): Promise<boolean> {
    if (this.distinct >= count) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.waiter = null;
          resolve(this.distinct >= count);
        },
        Math.max(0, deadlineMs - monotonicMs()),
      );
      this.waiter = {
        count,
        resolve: () => {
          clearTimeout(timer);
          this.waiter = null;
          resolve(true);
        },
      };
    });
  }

  /** Distinct ids received in [from, to). */
  countIn(from: number, to: number): number {
    let count = 0;
    for (let id = from; id < to; id++) if (!Number.isNaN(this.receivedAtMs[id] ?? Number.NaN)) count++;
    return count;
  }

  /** The sink's counters; also makes it send the receipts it has not reported yet. */
  stats(): Promise<SinkStats | null> {
    if (this.exit) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.statsWaiter = null;
        resolve(null);
      }, REPLY_TIMEOUT_MS);
      this.statsWaiter = (stats) => {
        clearTimeout(timer);
        this.statsWaiter = null;
        resolve(stats);
      };
      this.send({ type: 'stats' });
    });
  }

  async stop(): Promise<void> {
    if (this.exit) return;
    this.send({ type: 'stop' });
    const stopped = await Promise.race([this.exited.then(() => true), sleep(REPLY_TIMEOUT_MS).then(() => false)]);
    if (!stopped) this.kill();
  }

  kill(): void {
    if (!this.exit) this.child.kill('SIGKILL');
  }

  private send(message: ParentToSink): void {
    if (this.child.connected) this.child.send(message);
  }

  private handle(message: SinkToParent): void {
    if (message.type === 'received') {
      for (let k = 0; k < message.ids.length; k++) {
        const id = message.ids[k] ?? -1;
        const at = message.at[k] ?? Number.NaN;
        if (id < 0 || id >= this.receivedAtMs.length) this.strays++;
        else if (Number.isNaN(this.receivedAtMs[id] ?? 0)) {
          this.receivedAtMs[id] = at;
          this.distinct++;
        } else this.duplicates++;
      }
      if (this.waiter && this.distinct >= this.waiter.count) this.waiter.resolve();
    } else if (message.type === 'stats') {
      this.statsWaiter?.(message.stats);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
