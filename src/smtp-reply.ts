/**
 * An error that smtp-server sends as the reply to the command: `responseCode` and the text;
 * smtp-server adds the RFC 3463 enhanced code that goes with the code.
 */
export function smtpReply(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}
