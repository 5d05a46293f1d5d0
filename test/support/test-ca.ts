import { generate } from 'selfsigned';

export interface TestCa {
  /** The CA certificate (PEM), for delivery.tls.caFile. */
  cert: string;
  /** A key and a certificate signed by this CA, valid for `names` (DNS subjectAltNames). */
  issue(names: string[]): Promise<{ key: string; cert: string }>;
}

const DAY_MS = 86_400_000;

/** A private CA made for one test file, as an operator with an internal PKI would have. */
export async function makeTestCa(commonName = 'Rebound Test CA'): Promise<TestCa> {
  const ca = await generate([{ name: 'commonName', value: commonName }], {
    notAfterDate: new Date(Date.now() + DAY_MS),
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  return {
    cert: ca.cert,
    async issue(names) {
      const leaf = await generate([{ name: 'commonName', value: names[0] ?? 'localhost' }], {
        notAfterDate: new Date(Date.now() + DAY_MS),
        keySize: 2048,
        algorithm: 'sha256',
        ca: { key: ca.private, cert: ca.cert },
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) },
        ],
      });
      return { key: leaf.private, cert: leaf.cert };
    },
  };
}

/** A certificate no CA signed, for `name`. */
export async function selfSignedFor(name: string): Promise<{ key: string; cert: string }> {
  const pems = await generate([{ name: 'commonName', value: name }], { notAfterDate: new Date(Date.now() + DAY_MS), keySize: 2048, algorithm: 'sha256' });
  return { key: pems.private, cert: pems.cert };
}
