/**
 * Limits on connections and sessions that both SMTP listeners (submission, inbound) apply, so
 * that idle or dawdling clients cannot hold every connection slot:
 *
 * - at most `maxClientsPerIp` connections from one client address (Postfix's
 *   smtpd_client_connection_count_limit); a client the listener trusts can be exempt;
 * - a command line must be complete within the idle timeout (smtp-server's `socketTimeout`),
 *   counted from the reply that asked for it: a byte now and then no longer extends it. The
 *   message content after DATA keeps the idle timeout per read, as Postfix's smtpd_timeout does,
 *   because a large message on a slow link needs time;
 * - under stress (at least three quarters of `maxClients` open), a command line must come within
 *   `stressIdleTimeoutSeconds` instead, for clients already waiting too: idle connections can
 *   hold the slots for seconds, not for the whole idle timeout (Postfix's
 *   `smtpd_timeout = ${stress?{10}:{300}}s`, STRESS_README);
 * - no session lasts longer than `sessionTimeoutSeconds`, message content included;
 * - at most `maxJunkCommands` commands that send no mail (NOOP, RSET, VRFY, HELP, unknown ...)
 *   between two accepted messages (Postfix's smtpd_junk_command_limit).
 *
 * A client over a limit gets `421` and the connection is closed.
 */
import type { SMTPServer, SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Logger } from './logger.js';
import { smtpReply, useExplicitEnhancedCodes } from './smtp-listener.js';

export interface SessionLimitSettings {
  /** Connections at once from one client address; 0: no cap. */
  maxClientsPerIp: number;
  /** Clients the per-address cap does not apply to (maxClients still does); none when absent. */
  isExemptFromClientCap?: (address: string) => boolean;
  /** Longest a session may last, in seconds; 0: no limit. */
  sessionTimeoutSeconds: number;
  /** Commands that send no mail allowed between two accepted messages; 0: no limit. */
  maxJunkCommands: number;
  /** The idle timeout for command lines under stress, in seconds; 0 or absent: no stress mode. */
  stressIdleTimeoutSeconds?: number;
}

/** Commands that move a message forward; everything else counts against maxJunkCommands. */
const MAIL_COMMANDS = new Set(['MAIL', 'RCPT', 'DATA', 'AUTH', 'STARTTLS', 'QUIT']);
/** EHLO again after STARTTLS is required (RFC 3207); more than that is junk. */
const GREETINGS_ALLOWED = 2;
/** smtp-server's idle timeout when the listener sets none. */
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/**
 * Stress begins at this share of maxClients, not at the cap: a quarter of the slots stays free
 * for newcomers while the short timeout clears the idle connections. It ends below the lower
 * share, so a count hovering at the threshold does not switch it on and off with each client.
 */
const STRESS_BEGINS_SHARE = 0.75;
const STRESS_ENDS_SHARE = 0.5;

interface SessionState {
  greetings: number;
  junkCommands: number;
  /** Runs from a reply until the next complete command line. */
  commandTimer: NodeJS.Timeout | null;
  /** When the reply that started commandTimer was sent, and how long the timer runs. */
  waitingSince: number;
  waitingMs: number;
  sessionTimer: NodeJS.Timeout | null;
  /** The session deadline passed while the client waited for us: close after that reply. */
  expired: boolean;
}

class SessionLimits {
  private readonly clientsByAddress = new Map<string, number>();
  private readonly counted = new WeakSet<SMTPServerSession>();
  private readonly states = new WeakMap<SMTPServerSession, SessionState>();
  private readonly idleTimeoutMs: number;
  private readonly stressIdleTimeoutMs: number;
  /** Connections open at which stress begins, and below which it ends; Infinity without a stress timeout. */
  private readonly stressBeginsAt: number;
  private readonly stressEndsBelow: number;
  private stressed = false;
  /** Sessions whose commandTimer runs, to shorten their wait when stress begins. */
  private readonly awaitingCommand = new Map<SessionState, SMTPConnection>();

  constructor(
    private readonly server: SMTPServer,
    private readonly settings: SessionLimitSettings,
    private readonly log: Logger,
  ) {
    this.idleTimeoutMs = server.options.socketTimeout || DEFAULT_IDLE_TIMEOUT_MS;
    this.stressIdleTimeoutMs = Math.min((settings.stressIdleTimeoutSeconds ?? 0) * 1000, this.idleTimeoutMs);
    const maxClients = server.options.maxClients ?? 0;
    const stressMode = this.stressIdleTimeoutMs > 0 && maxClients > 0;
    this.stressBeginsAt = stressMode ? Math.max(1, Math.floor(maxClients * STRESS_BEGINS_SHARE)) : Infinity;
    this.stressEndsBelow = stressMode ? Math.floor(maxClients * STRESS_ENDS_SHARE) : Infinity;
  }

  /**
   * Checked on each connection and reply: stress begins or ends. When it begins, the clients
   * already waiting for a command get the stress timeout too, counted from the reply they were sent.
   */
  updateStress(): void {
    const open = this.server.connections.size;
    if (this.stressed && open < this.stressEndsBelow) {
      this.stressed = false;
      this.log.info({ open }, 'connections below the stress level again: idle timeout back to normal');
      return;
    }
    if (this.stressed || open < this.stressBeginsAt) return;
    this.stressed = true;
    this.log.warn(
      { open, maxClients: this.server.options.maxClients, seconds: this.stressIdleTimeoutMs / 1000 },
      'many connections open: clients now have the stress idle timeout to send a command',
    );
    const now = Date.now();
    for (const [state, connection] of this.awaitingCommand) {
      if (state.waitingMs <= this.stressIdleTimeoutMs) continue;
      this.armCommandTimer(connection, state, Math.max(0, state.waitingSince + this.stressIdleTimeoutMs - now), this.stressIdleTimeoutMs);
    }
  }

  /** Connections now open per client address (for tests and metrics). */
  clientsFrom(address: string): number {
    return this.clientsByAddress.get(address) ?? 0;
  }

  /** onConnect: counts the client's address, or refuses the connection over the cap. */
  admit(session: SMTPServerSession): Error | null {
    const { maxClientsPerIp, isExemptFromClientCap } = this.settings;
    const address = session.remoteAddress;
    if (maxClientsPerIp === 0 || isExemptFromClientCap?.(address)) return null;
    const open = this.clientsFrom(address);
    if (open >= maxClientsPerIp) {
      this.log.warn({ client: address, open, maxClientsPerIp }, 'connection refused: too many connections from this address');
      return smtpReply(421, `${this.server.options.name} Too many connections from your address (at most ${maxClientsPerIp}); try again later`, '4.7.0');
    }
    this.clientsByAddress.set(address, open + 1);
    this.counted.add(session);
    return null;
  }

  /** onClose: frees the client's slot and stops the session's timers. */
  release(session: SMTPServerSession): void {
    const state = this.states.get(session);
    if (state) this.stopTimers(state);
    if (!this.counted.has(session)) return;
    this.counted.delete(session);
    const open = this.clientsFrom(session.remoteAddress) - 1;
    if (open > 0) this.clientsByAddress.set(session.remoteAddress, open);
    else this.clientsByAddress.delete(session.remoteAddress);
  }

  /** A complete command line arrived; false when the junk budget is spent and the connection closed. */
  commandReceived(connection: SMTPConnection, command: Buffer): boolean {
    const state = this.stateOf(connection);
    this.stopCommandTimer(state);
    // Lines of an AUTH exchange and input before the greeting are smtp-server's to handle.
    if (connection._nextHandler || !connection._ready || connection._upgrading) return true;
    const name = command.toString('latin1').split(' ', 1)[0]!.toUpperCase();
    if (MAIL_COMMANDS.has(name)) return true;
    if ((name === 'EHLO' || name === 'HELO') && ++state.greetings <= GREETINGS_ALLOWED) return true;
    state.junkCommands++;
    const { maxJunkCommands } = this.settings;
    if (maxJunkCommands === 0 || state.junkCommands <= maxJunkCommands) return true;
    this.log.warn({ client: connection.remoteAddress, command: name, maxJunkCommands }, 'connection closed: too many commands that send no mail');
    connection.send(421, `4.7.0 ${connection.name} Too many commands that send no mail (at most ${maxJunkCommands} between messages); closing connection`);
    return false;
  }

  /** smtp-server wrote a reply: the client now owes us the next command line (or message content). */
  replied(connection: SMTPConnection, code: number, context: string | false | undefined): void {
    const state = this.stateOf(connection);
    if (code === 421 || connection._closing) return this.stopTimers(state);
    if (context === 'DATA_OK') state.junkCommands = 0;
    if (state.expired && code !== 354 && code !== 334) return this.expire(connection, state);
    this.stopCommandTimer(state);
    const receivingContent = connection._parser !== false && connection._parser._dataMode;
    if (receivingContent) return;
    state.waitingSince = Date.now();
    this.updateStress();
    const timeoutMs = this.stressed ? this.stressIdleTimeoutMs : this.idleTimeoutMs;
    this.armCommandTimer(connection, state, timeoutMs, timeoutMs);
  }

  /** Closes the connection in `delayMs` unless a command line comes; `timeoutMs` is what the client is told. */
  private armCommandTimer(connection: SMTPConnection, state: SessionState, delayMs: number, timeoutMs: number): void {
    if (state.commandTimer) clearTimeout(state.commandTimer);
    state.waitingMs = timeoutMs;
    state.commandTimer = setTimeout(() => {
      this.awaitingCommand.delete(state);
      this.log.info({ client: connection.remoteAddress, seconds: timeoutMs / 1000 }, 'connection closed: no complete command line in time');
      connection.send(421, `${connection.name} Timeout: no complete command within ${timeoutMs / 1000} seconds; closing connection`);
    }, delayMs);
    state.commandTimer.unref();
    this.awaitingCommand.set(state, connection);
  }

  private stateOf(connection: SMTPConnection): SessionState {
    let state = this.states.get(connection.session);
    if (state) return state;
    state = { greetings: 0, junkCommands: 0, commandTimer: null, waitingSince: 0, waitingMs: 0, sessionTimer: null, expired: false };
    this.states.set(connection.session, state);
    const { sessionTimeoutSeconds } = this.settings;
    if (sessionTimeoutSeconds > 0) {
      const created = state;
      created.sessionTimer = setTimeout(() => this.sessionDeadline(connection, created), sessionTimeoutSeconds * 1000);
      created.sessionTimer.unref();
    }
    return state;
  }

  private sessionDeadline(connection: SMTPConnection, state: SessionState): void {
    state.sessionTimer = null;
    // A command or a received message is being decided on: a 421 now could follow a commit
    // the client never hears of, and it would send the message again. Close after the reply.
    const deciding = connection._handlerPending || (connection._dataStream && connection._parser !== false && !connection._parser._dataMode);
    if (deciding) {
      state.expired = true;
      return;
    }
    this.expire(connection, state);
  }

  private expire(connection: SMTPConnection, state: SessionState): void {
    this.stopTimers(state);
    const seconds = this.settings.sessionTimeoutSeconds;
    this.log.info({ client: connection.remoteAddress, seconds }, 'connection closed: session time limit reached');
    connection.send(421, `${connection.name} Session time limit of ${seconds} seconds reached; closing connection`);
  }

  private stopCommandTimer(state: SessionState): void {
    if (state.commandTimer) clearTimeout(state.commandTimer);
    state.commandTimer = null;
    this.awaitingCommand.delete(state);
  }

  private stopTimers(state: SessionState): void {
    this.stopCommandTimer(state);
    if (state.sessionTimer) clearTimeout(state.sessionTimer);
    state.sessionTimer = null;
  }
}

const limitsByServer = new WeakMap<SMTPServer, SessionLimits>();
let hooksInstalled = false;

/**
 * smtp-server has no hook per command line or per reply, so two methods of its connection are
 * wrapped, once for all servers; each server's limits are looked up by the connection's server.
 * test/smtp-session-limits.test.ts performs each attack, so an smtp-server upgrade that moves
 * these methods fails there.
 */
function installConnectionHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  useExplicitEnhancedCodes();
  const onCommand = SMTPConnection.prototype._onCommand;
  SMTPConnection.prototype._onCommand = function (command: Buffer, callback?: () => void): void {
    const limits = limitsByServer.get(this._server);
    if (limits && !limits.commandReceived(this, command)) return;
    onCommand.call(this, command, callback);
  };
  const send = SMTPConnection.prototype.send;
  SMTPConnection.prototype.send = function (code: number, data?: string | string[] | null, context?: string | false): void {
    send.call(this, code, data, context);
    limitsByServer.get(this._server)?.replied(this, code, context);
  };
}

/** Applies the limits to a listener; call right after creating its SMTPServer. */
export function limitSessions(server: SMTPServer, settings: SessionLimitSettings, log: Logger): { clientsFrom(address: string): number } {
  installConnectionHooks();
  const limits = new SessionLimits(server, settings, log);
  limitsByServer.set(server, limits);
  const onConnect = server.onConnect.bind(server);
  server.onConnect = (session, callback) => {
    limits.updateStress();
    const refusal = limits.admit(session);
    if (refusal) return callback(refusal);
    onConnect(session, callback);
  };
  const onClose = server.onClose.bind(server);
  server.onClose = (session, callback) => {
    limits.release(session);
    onClose(session, callback);
  };
  return { clientsFrom: (address) => limits.clientsFrom(address) };
}
