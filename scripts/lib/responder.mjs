// A real `openssl ocsp` responder for a PKI made by pki.mjs, for tests and the demo.
//
// What OpenSSL 3.0's responder does (checked against 3.0.19):
// - `-port N` listens on all interfaces ([::] dual-stack, "ACCEPT [::]:N PID=..." on stdout);
//   clients should use 127.0.0.1. `-port 0` picks a free port, which the ACCEPT line reveals.
// - It serves one request at a time and one request per connection: answers are HTTP/1.0 with
//   Content-Length and the connection is closed (no keep-alive). POST works on any path. GET
//   works, but only as `GET /<url-encoded base64>`: the base64 must follow the first `/`, so the
//   responder URL must have no path (`http://127.0.0.1:N/ocsp/<b64>` gets a 400). Unencoded
//   base64 (`+`, `/`, `=` left as they are) is accepted too.
// - A request it cannot parse gets "HTTP/1.0 400 Bad Request" followed, on the same connection,
//   by a second, complete "HTTP/1.0 200 OK" response carrying malformedRequest (30 03 0a 01 01);
//   an HTTP client sees a 400 whose body is that whole second response. Without `-ignore_err`
//   the responder then exits; with it, it carries on.
// - A connection that is opened and closed (or half-closed) without a request, e.g. a bare TCP
//   "is the port open?" probe, makes it spin at 100% CPU and never answer again (`-timeout`
//   does not help). Readiness is therefore taken from its log line, never from probing the port.
// - It logs "waiting for OCSP client connections..." on stderr once listening, and
//   "Received request, 1st line: <request line>" for every request.
// - index.txt is re-read when its mtime/ctime/inode/device change, but that check runs *before*
//   the responder blocks waiting for the next connection, so the first request after a change is
//   still answered from the old index. `reload()` below sends one throwaway request to move it
//   past that point; pki.mjs calls it after addLeaf()/revokeLeaf().
// - No `-nmin`/`-ndays` means no nextUpdate in the responses. With `-multi` it logs to syslog
//   only, so it is not used here.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { onIndexChange } from './pki.mjs';

/** @typedef {import('./pki.mjs').Pki} Pki */
/** @typedef {import('node:child_process').ChildProcess} ChildProcess */
/**
 * @typedef {object} StartResponderOptions
 * @property {Pki} pki
 * @property {number} [port] default: the port of `pki.ocspUrl` when it names one, else any free port
 * @property {'delegated' | 'issuer' | { cert: string, key: string }} [signer] default `pki.signer`
 * @property {number} [nmin] nextUpdate = thisUpdate + nmin minutes; default 4320 (3 days)
 * @property {boolean} [noNextUpdate] leave nextUpdate out of the responses
 * @property {boolean} [log] copy the responder's output to this process's stderr
 * @property {string[]} [extraArgs] more `openssl ocsp` options, e.g. ['-badsig'], ['-rcid', 'sha256']
 */
/**
 * @typedef {object} Responder
 * @property {string} url `http://127.0.0.1:PORT` (no path: see above)
 * @property {number} port
 * @property {ChildProcess} process
 * @property {string[]} requests request lines received so far (e.g. `POST / HTTP/1.1`), without reload() pokes
 * @property {() => string} output what the responder printed so far (the last 256 KiB)
 * @property {() => Promise<void>} reload make it answer from the current index.txt from the next request on
 * @property {() => Promise<void>} stop SIGTERM, SIGKILL after 2 s; resolves once it has exited
 */

const READY_LINE = 'waiting for OCSP client connections';
const START_TIMEOUT_MS = 10_000;
const KILL_AFTER_MS = 2_000;
const OUTPUT_CAP = 256 * 1024;
// reload() POSTs here; any path is served, this one lets `requests` leave the pokes out.
const RELOAD_PATH = '/staplekeeper-fixture-reload';

// A minimal, valid OCSPRequest: one CertID (SHA-1, all-zero issuer hashes, serial 1). It matches
// no CA, so the answer is a signed "unknown" that nobody looks at.
const RELOAD_REQUEST = Buffer.from(
  '3042' +
    '3040' +
    '303e' +
    '303c' +
    '303a' +
    '300906052b0e03021a0500' +
    '0414' +
    '00'.repeat(20) +
    '0414' +
    '00'.repeat(20) +
    '020101',
  'hex',
);

/** Responders still running, killed when this process exits so that none outlives it. */
const live = new Set(/** @type {ChildProcess[]} */ ([]));
let exitHookInstalled = false;

/**
 * A port that was free on 127.0.0.1 a moment ago (another process may still take it before
 * openssl binds; startResponder() then fails with a clear error).
 * @returns {Promise<number>}
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('freePort: no port assigned'))));
    });
  });
}

/**
 * Starts `openssl ocsp` on the PKI's index and resolves once it listens.
 * @param {StartResponderOptions} opts
 * @returns {Promise<Responder>}
 */
export async function startResponder(opts) {
  const { pki } = opts;
  const requestedPort = opts.port ?? portOf(pki.ocspUrl) ?? 0;
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    throw new Error(`startResponder: bad port ${requestedPort}`);
  }
  const signer = opts.signer ?? pki.signer;
  const signerFiles =
    signer === 'issuer' ? pki.ca : signer === 'delegated' ? pki.responder : typeof signer === 'object' ? signer : null;
  if (!signerFiles) throw new Error(`startResponder: unknown signer ${String(signer)}`);
  const nmin = opts.nmin ?? 60 * 24 * 3;
  if (!Number.isInteger(nmin) || nmin < 0) throw new Error(`startResponder: bad nmin ${nmin}`);

  const args = [
    'ocsp',
    '-index',
    pki.index,
    '-port',
    String(requestedPort),
    '-rsigner',
    signerFiles.cert,
    '-rkey',
    signerFiles.key,
    '-CA',
    pki.ca.cert,
    ...(opts.noNextUpdate ? [] : ['-nmin', String(nmin)]),
    // Keeps it running after a request it cannot parse (see above).
    '-ignore_err',
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  installExitHook();

  let output = '';
  /** @type {string[]} */
  const requests = [];
  let sawReadyLine = false;
  let ready = false;
  let actualPort = requestedPort;
  // 'close' rather than 'exit': it comes after both pipes are drained, so `output` is complete.
  const exited = new Promise((resolve) => {
    child.once('close', resolve);
    child.once('error', resolve); // spawn failure: there may be no 'close'
  });
  exited.then(() => live.delete(child));

  /** @type {(value?: unknown) => void} */
  let onReady = () => {};
  const readyPromise = new Promise((resolve) => (onReady = resolve));

  /** @param {string} line */
  const onLine = (line) => {
    if (opts.log) process.stderr.write(`[ocsp :${actualPort || '?'}] ${line}\n`);
    const accept = /^ACCEPT \S*:(\d+) PID=/.exec(line);
    if (accept) actualPort = Number(accept[1]);
    const received = /Received request, 1st line: (.*?)\s*$/.exec(line);
    if (received && received[1] !== undefined && !received[1].includes(RELOAD_PATH)) requests.push(received[1]);
    if (line.includes(READY_LINE)) sawReadyLine = true;
    // With -port 0 the port is only known from the ACCEPT line, which comes on the other pipe.
    if (!ready && sawReadyLine && actualPort !== 0) {
      ready = true;
      onReady();
    }
  };
  // Both pipes are read for the whole life of the process: a full pipe would block the responder.
  for (const stream of [child.stdout, child.stderr]) {
    let carry = '';
    stream.setEncoding('utf8');
    stream.on('data', (/** @type {string} */ chunk) => {
      output = (output + chunk).slice(-OUTPUT_CAP);
      const lines = (carry + chunk).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
  }

  let spawnError = /** @type {Error | null} */ (null);
  child.once('error', (err) => (spawnError = err));
  /** @type {NodeJS.Timeout | undefined} */
  let startTimer;
  const outcome = await Promise.race([
    readyPromise.then(() => 'ready'),
    exited.then(() => 'exited'),
    new Promise((resolve) => (startTimer = setTimeout(() => resolve('timeout'), START_TIMEOUT_MS))),
  ]);
  clearTimeout(startTimer);

  if (outcome !== 'ready') {
    if (outcome === 'timeout') await kill(child, exited);
    const portText = requestedPort === 0 ? 'a free port' : `port ${requestedPort}`;
    if (spawnError) throw new Error(`startResponder: cannot run openssl: ${spawnError.message}`);
    if (/Address already in use/i.test(output)) {
      throw new Error(`startResponder: openssl ocsp cannot listen on ${portText}: address already in use`);
    }
    const why =
      outcome === 'timeout' ? `did not start within ${START_TIMEOUT_MS} ms` : `exited (code ${child.exitCode})`;
    throw new Error(
      `startResponder: openssl ocsp on ${portText} ${why}:\n${output.trim()}\n(openssl ${args.join(' ')})`,
    );
  }

  const url = `http://127.0.0.1:${actualPort}`;
  const reload = () => poke(actualPort);
  const unregister = onIndexChange(pki, reload);
  exited.then(unregister);

  return {
    url,
    port: actualPort,
    process: child,
    requests,
    output: () => output,
    reload,
    stop: async () => {
      unregister();
      await kill(child, exited);
    },
  };
}

/**
 * One throwaway request, answered before the responder goes back to its loop head, where it
 * re-reads a changed index.txt before accepting the next connection.
 * @param {number} port
 * @returns {Promise<void>}
 */
function poke(port) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: RELOAD_PATH,
        agent: false,
        headers: { 'Content-Type': 'application/ocsp-request', 'Content-Length': RELOAD_REQUEST.length },
        signal: AbortSignal.timeout(5_000),
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200
            ? resolve()
            : reject(new Error(`responder on port ${port}: reload request got HTTP ${res.statusCode}`)),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (err) => reject(new Error(`responder on port ${port}: reload request failed: ${err.message}`)));
    req.end(RELOAD_REQUEST);
  });
}

/**
 * @param {ChildProcess} child
 * @param {Promise<unknown>} exited
 */
async function kill(child, exited) {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * The explicit port of a loopback http URL, if any.
 * @param {string} url
 * @returns {number | undefined}
 */
function portOf(url) {
  if (!URL.canParse(url)) return undefined;
  const u = new URL(url);
  const loopback = u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
  return u.protocol === 'http:' && loopback && u.port !== '' ? Number(u.port) : undefined;
}

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: no waiting, just make sure nothing is left behind.
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}
