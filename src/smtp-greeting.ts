/**
 * When a listener sends its 220 greeting. smtp-server holds every greeting back 100 ms to catch
 * clients that talk first (its "early talker" check in SMTPConnection.init), with no option to
 * change it. For a client that opens one connection per message (nodemailer without `pool`,
 * PHPMailer, smtplib, cron jobs) that pause is most of the time a message takes: 10 such clients
 * could never pass 100 messages/s. So each listener says how long to pause:
 *
 * - submission: 0, the greeting goes out as soon as the connection is accepted;
 * - inbound (an MX on the internet): `inbound.greetPauseMs`, off (0) by default. A pause there is
 *   a real anti-spam measure (Postfix's postscreen_greet_wait): a client that sends a command
 *   before the greeting gets `421 You talk too soon` and is disconnected.
 *
 * smtp-server offers no hook, so its connection's `init` is replaced once for all servers; a
 * server that never called `setGreetingPause` keeps smtp-server's own behaviour.
 * test/smtp-greeting.test.ts times the greeting, so an smtp-server upgrade that brings the pause
 * back, or moves the methods used here, fails there.
 */
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const pauseByServer = new WeakMap<SMTPServer, number>();
let installed = false;

/** Sets how long `server` waits after accepting a connection before its greeting; 0: none. */
export function setGreetingPause(server: SMTPServer, pauseMs: number): void {
  if (!Number.isInteger(pauseMs) || pauseMs < 0) throw new RangeError(`greeting pause must be a whole number of milliseconds >= 0, not ${pauseMs}`);
  installGreetingHook();
  pauseByServer.set(server, pauseMs);
}

function installGreetingHook(): void {
  if (installed) return;
  const prototype = SMTPConnection.prototype;
  if (typeof prototype._setListeners !== 'function' || typeof prototype.connectionReady !== 'function' || typeof prototype.init !== 'function') {
    throw new Error(
      'smtp-server changed how a connection starts (SMTPConnection._setListeners, connectionReady or init is missing): ' +
        'Rebound cannot send its greeting without the 100 ms pause. Pin smtp-server to the version in package-lock.json or update src/smtp-greeting.ts.',
    );
  }
  installed = true;
  const init = prototype.init;
  prototype.init = function (this: SMTPConnection): void {
    const pauseMs = pauseByServer.get(this._server);
    if (pauseMs === undefined) return init.call(this);
    // What smtp-server's init does (listeners, the maxClients refusal), with our pause.
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
        return;
      }
      if (pauseMs === 0) {
        this.connectionReady();
        return;
      }
      // Unref'd as smtp-server does: a pending greeting does not keep the process alive.
      setTimeout(() => this.connectionReady(), pauseMs).unref();
    });
  };
}
