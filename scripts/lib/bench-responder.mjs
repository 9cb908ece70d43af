/**
 * A fast OCSP responder for the benchmark, run as its own process:
 *
 *   node scripts/lib/bench-responder.mjs <responses-dir> [latency-ms]
 *
 * It loads pre-signed responses (`<SERIAL-HEX>.der`, as bench-pki.mjs writes
 * them) into memory, listens on 127.0.0.1 (a free port), prints
 * `{"port":N}` on stdout, and answers RFC 5019 GET and RFC 6960 POST
 * requests by the serial in the request's CertID: a map lookup, so that the
 * client, not the responder, is what the benchmark measures (a real
 * responder signing each answer, such as `openssl ocsp`, is measured with
 * BENCH_RESPONDER=openssl). With a latency, every answer is delayed by that
 * many milliseconds on a timer, as a distant responder would be.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

const [dir, latencyArg] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: bench-responder.mjs <responses-dir> [latency-ms]\n');
  process.exit(2);
}
const latency = Number(latencyArg ?? 0);
const responses = new Map();
for (const name of readdirSync(dir)) {
  if (name.endsWith('.der')) responses.set(name.slice(0, -4), readFileSync(join(dir, name)));
}

/** Reads one DER header at `off`: tag, where the contents start, where the element ends. */
function tlv(buf, off) {
  let p = off + 1;
  let len = buf[p++];
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
  }
  return { tag: buf[off], vs: p, end: p + len };
}

/** The serial of the first CertID of an OCSPRequest, upper-case hex. */
function serialOf(req) {
  const ocspReq = tlv(req, 0);
  const tbs = tlv(req, ocspReq.vs);
  let p = tbs.vs;
  let el = tlv(req, p);
  while (el.tag === 0xa0 || el.tag === 0xa1) {
    p = el.end; // version, requestorName
    el = tlv(req, p);
  }
  const request = tlv(req, el.vs); // requestList → Request
  const certId = tlv(req, request.vs);
  const alg = tlv(req, certId.vs);
  const nameHash = tlv(req, alg.end);
  const keyHash = tlv(req, nameHash.end);
  const serial = tlv(req, keyHash.end);
  return req.subarray(serial.vs, serial.end).toString('hex').toUpperCase();
}

const unauthorized = Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x06]);
const malformed = Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x01]);

function answer(res, body) {
  const send = () => {
    res.writeHead(200, { 'content-type': 'application/ocsp-response', 'content-length': body.length });
    res.end(body);
  };
  if (latency > 0) setTimeout(send, latency);
  else send();
}

/** Requests per serial (BENCH_COUNTS=1: printed as JSON on stderr at SIGTERM; the fleet benchmark reads it). */
const perSerial = new Map();

function respond(res, der) {
  let body;
  try {
    const serial = serialOf(der);
    if (process.env.BENCH_COUNTS) perSerial.set(serial, (perSerial.get(serial) ?? 0) + 1);
    body = responses.get(serial) ?? unauthorized;
  } catch {
    body = malformed;
  }
  answer(res, body);
}

const server = createServer({ keepAlive: true }, (req, res) => {
  if (req.method === 'GET') {
    // the request is the last path segment, base64 then URL-encoded (a '/' of base64 arrives as %2F)
    const raw = req.url ?? '';
    respond(res, Buffer.from(decodeURIComponent(raw.slice(raw.lastIndexOf('/') + 1)), 'base64'));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => respond(res, Buffer.concat(chunks)));
});
let connections = 0;
let requests = 0;
server.on('connection', () => connections++);
server.on('request', () => requests++);
server.keepAliveTimeout = 30_000;
server.headersTimeout = 35_000;
server.maxRequestsPerSocket = 0;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, responses: responses.size })}\n`);
});
process.on('SIGTERM', () => {
  if (process.env.BENCH_VERBOSE) process.stderr.write(`responder: ${JSON.stringify({ connections, requests })}\n`);
  if (process.env.BENCH_COUNTS) {
    const counts = [...perSerial.values()];
    const summary = { requests, serials: perSerial.size, maxPerSerial: counts.length ? Math.max(...counts) : 0 };
    process.stderr.write(`counts: ${JSON.stringify(summary)}\n`);
  }
  process.exit(0);
});
