import { createInterface } from 'node:readline';
import { OperatorError } from '../errors.js';

/** Reads a password without echo from a terminal (asked twice), or the first line of piped stdin. */
export async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    let text = '';
    for await (const chunk of process.stdin) text += String(chunk);
    const password = text.split(/\r?\n/)[0] ?? '';
    if (password === '') throw new OperatorError('no password on stdin; pipe one line, e.g. `printf %s "$PW" | rebound passwd`');
    return password;
  }
  const first = await askHidden('Password: ');
  const second = await askHidden('Again: ');
  if (first !== second) throw new OperatorError('the two passwords differ; nothing was hashed');
  if (first === '') throw new OperatorError('an empty password is not allowed');
  return first;
}

function askHidden(prompt: string): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    const output = rl as unknown as { _writeToOutput: (text: string) => void };
    output._writeToOutput = (text: string) => {
      // Echo the prompt only, never the typed characters.
      if (text.includes(prompt)) process.stderr.write(prompt);
    };
    rl.question(prompt, (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}
