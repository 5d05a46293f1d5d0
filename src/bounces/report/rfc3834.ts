/**
 * Auto-replies (RFC 3834): vacation and out-of-office answers are not bounces. RFC 3834 §5 marks
 * them `Auto-Submitted: auto-replied`; Exchange, Apple and others use their own headers or only a
 * subject, so the signs are data (config/ndr-patterns.json `autoReply`). Mail delivery systems
 * also say Auto-Submitted (Exim does), so a message from one of them is never an auto-reply.
 */
import type { Headers } from './mime.js';
import type { ReportPatterns } from './patterns.js';

export function isAutoReply(headers: Headers, from: string, subject: string, patterns: ReportPatterns): boolean {
  const signs = patterns.autoReply;
  if (signs.notFrom.test(from)) return false;
  for (const [name, pattern] of signs.headers) {
    const values = headers.get(name);
    if (values !== undefined && values.some((value) => pattern.test(value))) return true;
  }
  return signs.subject.test(subject);
}
