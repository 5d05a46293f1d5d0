import { connect, type Socket } from 'node:net';

export interface Reply {
  code: number;
  /** All lines of the reply, joined with \n, codes included. */
  text: string;
}

/**
 * A scripted SMTP client on a raw socket, for the conversations nodemailer will not have: bare
 * LFs, lies in SIZE=, a connection dropped in the middle of DATA.
 */
export class SmtpDialog {
  private buffer = '';
  private replies: Reply[] = [];
  private waiters: Array<(reply: Reply) => void> = [];
  private closedWaiters: Array<() => void> = [];
  closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      for (const waiter of this.closedWaiters) waiter();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number, options: { localAddress?: string; host?: string } = {}): Promise<SmtpDialog> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: options.host ?? '127.0.0.1', localAddress: options.localAddress }, () =>
        resolve(new SmtpDialog(socket)),
      );
      socket.once('error', reject);
    });
  }

  /** Opens a connection, reads the greeting and says EHLO. */
  static async start(port: number, options: { localAddress?: string } = {}): Promise<SmtpDialog> {
    const dialog = await SmtpDialog.open(port, options);
    await dialog.expect(220);
    await dialog.command('EHLO client.test', 250);
    return dialog;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let current: string[] = [];
    for (;;) {
      const end = this.buffer.indexOf('\r\n');
      if (end === -1) break;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      current.push(line);
      if (line[3] !== '-') {
        const reply = { code: Number(line.slice(0, 3)), text: current.join('\n') };
        current = [];
        const waiter = this.waiters.shift();
        if (waiter) waiter(reply);
        else this.replies.push(reply);
      }
    }
    if (current.length) this.buffer = `${current.map((l) => `${l}\r\n`).join('')}${this.buffer}`;
  }

  read(timeoutMs = 10_000): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SMTP reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  async expect(code: number): Promise<Reply> {
    const reply = await this.read();
    if (reply.code !== code) throw new Error(`expected ${code}, got: ${reply.text}`);
    return reply;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends one command line and returns the reply, checking its code when one is given. */
  async command(line: string, expectedCode?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return expectedCode === undefined ? this.read() : this.expect(expectedCode);
  }

  /** Drops the TCP connection without QUIT. */
  destroy(): void {
    this.socket.destroy();
  }

  waitClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    this.write('QUIT\r\n');
    await this.waitClosed();
  }
}
