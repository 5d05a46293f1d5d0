/**
 * A problem the operator fixes without reading code (a config value, a path, a busy port). The CLI
 * prints its message alone, without a stack trace; the message names the thing and the fix.
 */
export class OperatorError extends Error {
  override name = 'OperatorError';
}
