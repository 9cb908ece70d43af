// The CRL benchmark of issue 13: a 1,000,000-entry CRL (~30 MB) minted here, then decoded,
// its signature verified and two serials looked up (the last entry, and one not listed) with
// the lean reader of dist/core/crl.js. Prints the times and the memory; asserts nothing.
//
//   npm run build && node scripts/bench-crl.mjs        (BENCH_CRL_N=200000 for a smaller one)
//
// `npm run bench` runs it too (BENCH_ONLY containing `crl`, on by default).
import { generateKeyPairSync, sign } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_CRL_N ?? 1_000_000);

function len(n) {
  if (n < 0x80) return Buffer.from([n]);
  const b = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
const tlv = (tag, ...parts) => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};
const utc = (d) => tlv(0x17, Buffer.from(`${d.toISOString().slice(2, 19).replace(/[-T:]/g, '')}Z`, 'latin1'));
const oid = (hex) => tlv(0x06, Buffer.from(hex, 'hex'));

/** Entry i: serial 0x10 + 4 octets of i; a reasonCode (keyCompromise) on every 4th, as in real large CRLs. */
function entries(n, date) {
  const time = utc(date);
  const reason = tlv(0x30, tlv(0x30, oid('551d15'), tlv(0x04, tlv(0x0a, Buffer.from([1])))));
  const parts = new Array(n);
  for (let i = 0; i < n; i++) {
    const serial = Buffer.from([0x10, (i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
    parts[i] = i % 4 === 0 ? tlv(0x30, tlv(0x02, serial), time, reason) : tlv(0x30, tlv(0x02, serial), time);
  }
  return Buffer.concat(parts);
}

async function main() {
  const crlJs = join(ROOT, 'dist', 'core', 'crl.js');
  if (!existsSync(crlJs)) throw new Error('run `npm run build` first');
  const { decodeCrl, findRevoked, countRevoked } = await import(pathToFileURL(crlJs).href);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = new Date();
  const alg = tlv(0x30, oid('2a8648ce3d040302')); // ecdsa-with-SHA256
  const name = tlv(0x30, tlv(0x31, tlv(0x30, oid('550403'), tlv(0x0c, Buffer.from('bench CRL CA')))));
  const t0 = performance.now();
  const list = entries(N, new Date(now.getTime() - 86_400_000));
  const tbs = tlv(
    0x30,
    tlv(0x02, Buffer.from([1])),
    alg,
    name,
    utc(new Date(now.getTime() - 3_600_000)),
    utc(new Date(now.getTime() + 7 * 86_400_000)),
    tlv(0x30, list),
  );
  const der = tlv(0x30, tbs, alg, tlv(0x03, Buffer.from([0]), sign('sha256', tbs, privateKey)));
  const mintMs = performance.now() - t0;
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  const heap0 = process.memoryUsage().heapUsed;

  const t1 = performance.now();
  const crl = decodeCrl(der);
  const decodeMs = performance.now() - t1;
  const t2 = performance.now();
  const { verify } = await import('node:crypto');
  const sigOk = verify('sha256', crl.tbsDer, publicKey, crl.signature);
  const verifyMs = performance.now() - t2;
  const last = Buffer.from([
    0x10,
    ((N - 1) >>> 24) & 0xff,
    ((N - 1) >>> 16) & 0xff,
    ((N - 1) >>> 8) & 0xff,
    (N - 1) & 0xff,
  ]);
  const t3 = performance.now();
  const hit = findRevoked(crl, last);
  const hitMs = performance.now() - t3;
  const t4 = performance.now();
  const miss = findRevoked(crl, Buffer.from([0x7e, 1, 2, 3, 4, 5]));
  const missMs = performance.now() - t4;
  const t5 = performance.now();
  const count = countRevoked(crl);
  const countMs = performance.now() - t5;
  const rss1 = process.memoryUsage().rss;
  const heap1 = process.memoryUsage().heapUsed;
  const mb = (b) => (b / 1024 / 1024).toFixed(1);
  const total = decodeMs + verifyMs + missMs;
  const rows = [
    ['CRL', `${N.toLocaleString('en')} entries, ${mb(der.length)} MB (minted in ${mintMs.toFixed(0)} ms)`],
    ['decode (structure, list delimited)', `${decodeMs.toFixed(1)} ms`],
    [
      'signature (ECDSA P-256, SHA-256 over the whole list)',
      `${verifyMs.toFixed(1)} ms (${sigOk ? 'valid' : 'INVALID'})`,
    ],
    ['lookup, last entry (found)', `${hitMs.toFixed(1)} ms (${hit ? 'found' : 'NOT FOUND'})`],
    ['lookup, serial not listed', `${missMs.toFixed(1)} ms (${miss ? 'FOUND?' : 'not listed'})`],
    ['framing pass over every entry', `${countMs.toFixed(1)} ms (${count} entries)`],
    ['decode + verify + lookup (a check of one certificate)', `${total.toFixed(1)} ms`],
    ['memory after (RSS / heap growth)', `${mb(rss1)} MB RSS (+${mb(rss1 - rss0)}), heap +${mb(heap1 - heap0)} MB`],
  ];
  process.stdout.write(`\n## CRL lookup (issue 13), Node ${process.version}\n\n| step | figure |\n| --- | --- |\n`);
  for (const [k, v] of rows) process.stdout.write(`| ${k} | ${v} |\n`);
  process.stdout.write('\n');
}

main().catch((e) => {
  process.stderr.write(`bench-crl failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
