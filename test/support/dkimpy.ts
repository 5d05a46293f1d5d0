import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./dkimpy-verify.py', import.meta.url));

export interface DkimpyResult {
  index: number;
  valid: boolean;
  error?: string;
  d?: string;
  s?: string;
  a?: string;
  c?: string;
  /** h= as signed, whitespace removed. */
  h?: string;
}

let python: string | null = null;

/**
 * A Python that imports dkimpy and PyNaCl (Debian's python3-dkim and python3-nacl, which
 * `.ci/run` installs): `python3` first, then Debian's own, for a PATH where pyenv's python3
 * comes first without those packages.
 */
function pythonWithDkim(): string {
  if (python) return python;
  for (const candidate of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(candidate, ['-c', 'import dkim, nacl'], { stdio: 'ignore' });
      python = candidate;
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error('no python3 with dkimpy and PyNaCl: apt-get install -y python3-dkim python3-nacl (.ci/run does)');
}

/**
 * Verifies each DKIM-Signature of `message` with dkimpy; `records` maps selector._domainkey.domain
 * to the TXT text a resolver would return (the strings of the record joined).
 */
export function verifyWithDkimpy(message: Buffer, records: Record<string, string>): Promise<{ signatures: DkimpyResult[]; asked: string[] }> {
  const input = JSON.stringify({ message: message.toString('base64'), records });
  return new Promise((resolve, reject) => {
    const child = execFile(pythonWithDkim(), [SCRIPT], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`dkimpy failed: ${stderr || error.message}`));
      resolve(JSON.parse(stdout) as { signatures: DkimpyResult[]; asked: string[] });
    });
    child.stdin?.end(input);
  });
}

/**
 * The TXT text a resolver returns for a record line as `rebound dkim add` prints it
 * (`NAME TXT "…" "…"`): the name, and the quoted strings joined (RFC 7208 3.3 / RFC 6376 3.6.2.2).
 */
export function recordFromLine(line: string): { name: string; text: string } {
  const match = /^(\S+) TXT ((?:"[^"]*" ?)+)$/.exec(line);
  if (!match) throw new Error(`not a TXT record line: ${line}`);
  const strings = [...(match[2] as string).matchAll(/"([^"]*)"/g)].map((m) => m[1] as string);
  for (const piece of strings) if (Buffer.byteLength(piece) > 255) throw new Error(`a TXT string longer than 255 bytes: ${piece.length}`);
  return { name: match[1] as string, text: strings.join('') };
}
