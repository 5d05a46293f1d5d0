import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout: one object per event, for journald, Docker or `jq`. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'rebound' }, timestamp: pino.stdTimeFunctions.isoTime });
}
