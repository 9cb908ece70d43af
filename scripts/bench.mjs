#!/usr/bin/env node
/**
 * `npm run bench`: staplekeeper as whole processes, from start to exit,
 * against its floor (scripts/bench-floor.mjs). See docs/PERFORMANCE.md.
 *
 *   npm run bench                     N = 1,000 and 10,000; P-256 and RSA-2048; 5 runs each
 *   npm run bench -- --quick          N = 1,000, P-256 only, 3 runs (about four minutes)
 *
 * Environment overrides:
 *   BENCH_N=1000,10000        certificate counts for the check passes (a, b)
 *   BENCH_KEYS=ec-p256,rsa-2048
 *   BENCH_RUNS=5              runs per figure (the median and the min–max are printed)
 *   BENCH_RENEW_N=1000        certificate count for the renewal passes (c, d); 0 skips them
 *   BENCH_LATENCY=50          responder latency of (d), ms
 *   BENCH_RESPONDER=node      node: pre-signed answers from a separate Node process
 *                             (bench-responder.mjs); openssl: `openssl ocsp -multi 2`,
 *                             signing every answer (POST only, see PERFORMANCE.md)
 *   BENCH_DAEMON=1            measure (f) when `staplekeeper daemon` exists (0 skips)
 *   BENCH_DIR=.bench          where PKIs (reused for 12 h) and results go
 *   BENCH_BIN=bin/staplekeeper  the executable to measure
 *   BENCH_ONLY=a,b,c,d,e,f,doors,load   only these figures (default: all; `doors` alone is a quick subset)
 *   BENCH_DOOR_N=10000        certificate counts of the door figures (default: BENCH_N's largest, and 100000
 *                             when BENCH_N holds it: then only the `domains` and `ocsprenewer` doors)
 *   OCSPRENEWER_BIN=path      a locally built Go ocsprenewer, run on the same files with the same flags as the
 *                             ocsprenewer door (its ratio is printed); skipped when unset. Never committed.
 *
 * Every figure is the wall time of a fresh process (Node start-up included);
 * the machine's load average is printed with the results because a busy
 * machine inflates every number.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AIA_OCSP_URL, buildBenchPki, domainsConfig } from './lib/bench-pki.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const env = process.env;
const list = (v, d) =>
  (v ?? d)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const NS = list(env.BENCH_N, quick ? '1000' : '1000,10000').map(Number);
const KEYS = list(env.BENCH_KEYS, quick ? 'ec-p256' : 'ec-p256,rsa-2048');
const RUNS = Number(env.BENCH_RUNS ?? (quick ? 3 : 5));
const RENEW_N = Number(env.BENCH_RENEW_N ?? 1000);
const LATENCY = Number(env.BENCH_LATENCY ?? 50);
const RESPONDER = env.BENCH_RESPONDER ?? 'node';
const DAEMON = (env.BENCH_DAEMON ?? '1') !== '0';
const BENCH_DIR = resolve(ROOT, env.BENCH_DIR ?? '.bench');
// staplekeeper's configuration cache (src/config/config-cache.ts) lives here during the benchmark, not in ~/.cache;
// every staplekeeper process the benchmark starts inherits this.
const CONFIG_CACHE = join(BENCH_DIR, 'config-cache');
process.env.STAPLEKEEPER_CACHE_DIR = CONFIG_CACHE;
const BIN = resolve(ROOT, env.BENCH_BIN ?? 'bin/staplekeeper');
const ONLY = new Set(list(env.BENCH_ONLY, 'a,b,c,d,e,f,doors,load,crl'));
const DOOR_NS = list(env.BENCH_DOOR_N, String(Math.max(...NS.filter((n) => n < 100000), 0) || 10000))
  .map(Number)
  .concat(NS.includes(100000) && !env.BENCH_DOOR_N ? [100000] : []);
const GO_RENEWER = env.OCSPRENEWER_BIN ? resolve(env.OCSPRENEWER_BIN) : undefined;
const TIME_BIN = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const FLOOR = join(ROOT, 'scripts', 'bench-floor.mjs');
const RESPONDER_JS = join(ROOT, 'scripts', 'lib', 'bench-responder.mjs');
const CACHE_FILE = '.staplekeeper-cache.json';

const log = (s) => process.stderr.write(`${s}\n`);
const results = [];

// ---------------------------------------------------------------- measuring

/** Runs a command to completion; returns wall seconds. Throws unless `check` accepts the result. */
function timed(cmd, args, { cwd, check } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw r.error;
  if (check && !check(r)) {
    throw new Error(
      `${cmd} ${args.join(' ')} (exit ${r.status}):\n${(r.stdout ?? '').slice(-800)}\n${(r.stderr ?? '').slice(-800)}`,
    );
  }
  return s;
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], runs: s.length };
}

/** Measures `fn` RUNS times (after `warmups` unmeasured runs); `before` runs untimed before each. */
function measure(fn, { runs = RUNS, before, warmups = 0 } = {}) {
  for (let i = 0; i < warmups; i++) {
    before?.();
    fn();
  }
  const xs = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    xs.push(fn());
  }
  return stats(xs);
}

function record(row) {
  results.push(row);
  const f = (x) => (x === undefined ? '' : x < 1 ? `${(x * 1000).toFixed(0)} ms` : `${x.toFixed(2)} s`);
  const ratio = row.floor ? `${(row.value.median / row.floor.median).toFixed(1)}×` : '';
  log(
    `  ${row.label.padEnd(46)} ${f(row.value.median).padStart(9)}  (${f(row.value.min)}–${f(row.value.max)})` +
      (row.floor ? `   floor ${f(row.floor.median).padStart(8)}  ${ratio.padStart(6)}` : '') +
      (row.target ? `   target ≤ ${f(row.target)} ${row.value.median <= row.target ? 'met' : 'MISSED'}` : ''),
  );
}

const summary = (n, what) => (r) =>
  r.stdout.includes(
    `${what === 'updated' ? `0 unchanged OCSP responses, ${n} updated` : `${n} unchanged OCSP responses, 0 updated`} OCSP responses and 0 failures`,
  );

// ---------------------------------------------------------------- responders

async function startResponder(pkiDir, latencyMs) {
  if (RESPONDER === 'openssl') return startOpenssl(pkiDir);
  const child = spawn(process.execPath, [RESPONDER_JS, join(pkiDir, 'responses'), String(latencyMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((res, rej) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) res(JSON.parse(buf.slice(0, nl)).port);
    });
    child.once('exit', (c) => rej(new Error(`responder exited with ${c}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/ocsp`,
    method: 'auto',
    stop: () => new Promise((r) => (child.once('exit', r), child.kill('SIGTERM'))),
  };
}

async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** `openssl ocsp -multi 2`, signing each answer; OpenSSL 3.0 mis-decodes RFC 5019 GETs, so POST. */
async function startOpenssl(pkiDir) {
  const port = await freePort();
  const child = spawn(
    'openssl',
    [
      'ocsp',
      '-index',
      'index.txt',
      '-port',
      String(port),
      '-rsigner',
      'responder.pem',
      '-rkey',
      'responder.key',
      '-CA',
      'chain.pem',
      '-ndays',
      '1',
      '-multi',
      '2',
    ],
    // not detached: with -multi, openssl makes itself a process group leader (setpgid fails in a new session)
    { cwd: pkiDir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // ready once it listens: `ACCEPT …` on stdout (with -multi the parent prints nothing more)
  await new Promise((res, rej) => {
    let buf = '';
    const seen = (d) => {
      buf += d;
      if (buf.includes('ACCEPT') || buf.includes('waiting for OCSP client connections')) res();
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.once('exit', (c) => rej(new Error(`openssl ocsp exited with ${c}: ${buf}`)));
  });
  await sleep(300); // the workers are forked after the parent listens
  child.stdout.resume();
  child.stderr.resume();
  return {
    url: `http://127.0.0.1:${port}/ocsp`,
    method: 'post',
    stop: async () => {
      try {
        process.kill(-child.pid, 'SIGKILL'); // the -multi parent and its workers: the group openssl made
      } catch {
        // gone
      }
    },
  };
}

// ---------------------------------------------------------------- scenarios

function writeConfig(pkiDir, n, name, { url = 'http://127.0.0.1:9/ocsp', extra = '' } = {}) {
  const file = join(pkiDir, name);
  writeFileSync(file, domainsConfig({ n, responderUrl: url, extra }));
  return file;
}

const sk = (args) => [BIN, ...args];

async function checkPasses(kt, n) {
  const pkiDir = join(BENCH_DIR, `pki-${kt}-${n}`);
  await buildBenchPki({ dir: pkiDir, n, keyType: kt, log });
  const cfg = writeConfig(pkiDir, n, 'bench-check.yaml');
  const cacheFile = join(pkiDir, 'staples', CACHE_FILE);
  const run = () =>
    timed(process.execPath, sk(['run', '-c', cfg, '-q']), { cwd: pkiDir, check: summary(n, 'unchanged') });
  log(`\n${kt}, N = ${n.toLocaleString('en')}`);
  const floorVerify = measure(() =>
    timed(process.execPath, [FLOOR, 'check', pkiDir, String(n), 'verify'], { check: (r) => r.status === 0 }),
  );
  // cold: nothing cached from earlier runs — neither the staple-folder cache nor the configuration cache
  const cold = measure(run, {
    before: () => {
      rmSync(cacheFile, { force: true });
      rmSync(CONFIG_CACHE, { recursive: true, force: true });
    },
  });
  record({
    id: 'a',
    label: `(a) cold check (every signature verified)`,
    kt,
    n,
    value: cold,
    floor: floorVerify,
    target: n === 10000 ? 2.0 : undefined,
  });
  run(); // the cache is in place
  const floorRead = measure(() =>
    timed(process.execPath, [FLOOR, 'check', pkiDir, String(n), 'read'], { check: (r) => r.status === 0 }),
  );
  const warm = measure(run);
  record({
    id: 'b',
    label: `(b) warm check`,
    kt,
    n,
    value: warm,
    floor: floorRead,
    target: n === 10000 ? 0.5 : undefined,
  });
  // for the record: every staple verified again, but the configuration taken from its cache
  const coldStaples = measure(run, { before: () => rmSync(cacheFile, { force: true }) });
  record({ id: 'a2', label: `(a) … with the configuration cache in place`, kt, n, value: coldStaples });
  run(); // leave the staple cache in place
  return pkiDir;
}

async function renewalPasses(kt, n) {
  const pkiDir = join(BENCH_DIR, `pki-${kt}-${n}`);
  await buildBenchPki({ dir: pkiDir, n, keyType: kt, log });
  const scenarios = [
    {
      id: 'c',
      label: '(c) renewal, fast local responder',
      latency: 0,
      extra: '',
      inFlight: 8,
      target: n === 1000 ? 1.5 : undefined,
    },
    {
      id: 'd8',
      label: `(d) renewal, ${LATENCY} ms latency, per-host 8`,
      latency: LATENCY,
      extra: '',
      inFlight: 8,
      target: n === 1000 ? 8 : undefined,
    },
    {
      id: 'd32',
      label: `(d) renewal, ${LATENCY} ms latency, per-host 32`,
      latency: LATENCY,
      extra: 'per_host_concurrency: 32',
      // the default overall concurrency is max(16, per_host_concurrency) = 32
      inFlight: 32,
      target: n === 1000 ? 2.5 : undefined,
    },
    {
      id: 'd32c32',
      label: `(d) … per-host 32, concurrency 32`,
      latency: LATENCY,
      extra: 'per_host_concurrency: 32\nconcurrency: 32',
      inFlight: 32,
    },
  ];
  log(
    `\n${kt}, N = ${n.toLocaleString('en')}, renewals (--force) against ${RESPONDER === 'openssl' ? 'openssl ocsp -multi 2' : 'the pre-signing Node responder'}`,
  );
  for (const sc of scenarios) {
    if (RESPONDER === 'openssl' && sc.latency > 0) continue; // latency is a feature of the Node responder
    const responder = await startResponder(pkiDir, sc.latency);
    try {
      const extra = [sc.extra, responder.method === 'post' ? 'http:\n  method: post' : ''].filter(Boolean).join('\n');
      const cfg = writeConfig(pkiDir, n, `bench-renew-${sc.id}.yaml`, { url: responder.url, extra });
      const runs = quick ? RUNS : Math.max(3, RUNS);
      const value = measure(
        () =>
          timed(process.execPath, sk(['run', '-c', cfg, '-q', '--force']), {
            cwd: pkiDir,
            check: summary(n, 'updated'),
          }),
        { runs },
      );
      const floor =
        RESPONDER === 'openssl'
          ? undefined
          : measure(
              () =>
                timed(process.execPath, [FLOOR, 'renew', pkiDir, String(n), responder.url, String(sc.inFlight)], {
                  check: (r) => r.status === 0,
                }),
              { runs },
            );
      record({ id: sc.id, label: sc.label, kt, n, value, floor, target: sc.target });
    } finally {
      await responder.stop();
    }
  }
}

function startupPass() {
  log('\nstart-up');
  const value = measure(() => timed(process.execPath, sk(['--version']), { check: (r) => r.status === 0 }), {
    runs: Math.max(RUNS, 10),
    warmups: 2,
  });
  const floor = measure(() => timed(process.execPath, [FLOOR, 'version'], { check: (r) => r.status === 0 }), {
    runs: Math.max(RUNS, 10),
    warmups: 2,
  });
  record({ id: 'e', label: '(e) staplekeeper --version', kt: '-', n: 0, value, floor, target: 0.15 });
}

// ---------------------------------------------------------------- the doors

/**
 * Runs a command to completion under /usr/bin/time; returns wall seconds and
 * the peak RSS (MB) of the process. Throws unless `check` accepts the result.
 */
function timedRss(cmd, args, { cwd, check } = {}) {
  const rssFile = join(BENCH_DIR, `.rss-${process.pid}`);
  const [c, a] = TIME_BIN ? [TIME_BIN, ['-f', '%M %U %S', '-o', rssFile, cmd, ...args]] : [cmd, args];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(c, a, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw r.error;
  if (check && !check(r)) {
    throw new Error(
      `${cmd} ${args.join(' ')} (exit ${r.status}):\n${(r.stdout ?? '').slice(-800)}\n${(r.stderr ?? '').slice(-800)}`,
    );
  }
  let rss = NaN;
  let cpu = NaN;
  if (TIME_BIN) {
    const [kb, user, sys] = (readFileSync(rssFile, 'utf8').trim().split('\n').at(-1) ?? '').split(' ').map(Number);
    rss = kb / 1024;
    cpu = user + sys;
    rmSync(rssFile, { force: true });
  }
  return { s, rss, cpu };
}

/** Measures a door: RUNS timed runs (`before` untimed before each); the median wall time and peak RSS. */
function measureDoor(fn, { before, runs = RUNS } = {}) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    results.push(fn());
  }
  return summaryOf(results);
}

/** The medians of a door's runs ({@link timedRss} results). */
function summaryOf(results) {
  const rss = results.map((r) => r.rss);
  // CPU time (user + system) beside the wall time: on a shared machine the load moves it far less
  return {
    ...stats(results.map((r) => r.s)),
    rss: stats(rss).median,
    rssMax: Math.max(...rss),
    cpu: stats(results.map((r) => r.cpu)).median,
  };
}

/**
 * The other layouts of the same certificates and staples, made once per PKI
 * (hard links to the certificate and staple files, so that making them is
 * quick; a check pass writes none of them; each certificate's chain and root
 * chain are copies of `chain.pem`, as in ocspbot's folders):
 *   scan/<d>.pem, scan/<d>-chain.pem, scan/<d>-rootchain.pem   ocspbot's scan_keys triple
 *   scan-staples/<d>.ocsp-resp                                 its staples (ocspbot's default ocsp_mask)
 *   crt/<d>.crt                                                ocsprenewer's bundles: leaf, then issuer
 *   out/<d>.ocsp                                               their staples
 */
function doorLayouts(pkiDir, n, withScan) {
  // (version 2: the scan layout's chain files are copies)
  const stamp = join(pkiDir, `layouts${withScan ? '-scan' : ''}-2.done`);
  if (existsSync(stamp)) return;
  const t0 = Date.now();
  const chain = readFileSync(join(pkiDir, 'chain.pem'), 'utf8');
  for (const d of ['crt', 'out', ...(withScan ? ['scan', 'scan-staples'] : [])]) {
    rmSync(join(pkiDir, d), { recursive: true, force: true });
    mkdirSync(join(pkiDir, d));
  }
  for (let i = 1; i <= n; i++) {
    const id = `d${String(i).padStart(5, '0')}`;
    const leaf = readFileSync(join(pkiDir, 'certs', `${id}.pem`), 'utf8');
    const staple = join(pkiDir, 'staples', `${id}.der`);
    writeFileSync(join(pkiDir, 'crt', `${id}.crt`), leaf + chain);
    copyFileSync(staple, join(pkiDir, 'out', `${id}.ocsp`));
    if (withScan) {
      linkSync(join(pkiDir, 'certs', `${id}.pem`), join(pkiDir, 'scan', `${id}.pem`));
      // copies, as in ocspbot's folders (each certificate's own chain files), not links to one file
      writeFileSync(join(pkiDir, 'scan', `${id}-chain.pem`), chain);
      writeFileSync(join(pkiDir, 'scan', `${id}-rootchain.pem`), chain);
      linkSync(staple, join(pkiDir, 'scan-staples', `${id}.ocsp-resp`));
    }
  }
  writeFileSync(stamp, '');
  log(`laid out the doors' files for ${n.toLocaleString('en')} certificates in ${Date.now() - t0} ms`);
}

const exitZero = (r) => r.status === 0;
const RENEWER_FLAGS = ['-if-needed', '-dirs', '-cert-extensions', '.crt', '-out-dir', 'out', 'crt'];

async function doorPasses(kt, n) {
  const pkiDir = join(BENCH_DIR, `pki-${kt}-${n}`);
  await buildBenchPki({ dir: pkiDir, n, keyType: kt, log });
  const big = n >= 100000;
  doorLayouts(pkiDir, n, !big);
  const cfg = writeConfig(pkiDir, n, 'bench-check.yaml');
  const scanCfg = join(pkiDir, 'bench-scan.yaml');
  writeFileSync(
    scanCfg,
    `ocsp_folder: scan-staples\nresponders:\n  "${AIA_OCSP_URL}": "http://127.0.0.1:9/ocsp"\nscan_keys:\n  - folder: scan\n`,
  );
  const bin = (name) => join(dirname(BIN), name);
  const doors = [
    {
      door: 'run, domains',
      cmd: [BIN, 'run', '-c', cfg, '-q'],
      check: summary(n, 'unchanged'),
      caches: [join(pkiDir, 'staples', CACHE_FILE)],
    },
    ...(big
      ? []
      : [
          {
            door: 'run, scan_keys',
            cmd: [BIN, 'run', '-c', scanCfg, '-q'],
            check: summary(n, 'unchanged'),
            caches: [join(pkiDir, 'scan-staples', CACHE_FILE)],
          },
          {
            door: 'ocspbot (scan_keys)',
            cmd: [bin('ocspbot'), scanCfg],
            check: exitZero,
            caches: [join(pkiDir, 'scan-staples', CACHE_FILE)],
          },
        ]),
    {
      door: 'ocsprenewer -if-needed -dirs',
      cmd: [bin('ocsprenewer'), ...RENEWER_FLAGS],
      check: exitZero,
      caches: [join(pkiDir, 'out', CACHE_FILE)],
      go: true,
    },
  ];
  log(`\ndoors, ${kt}, N = ${n.toLocaleString('en')}`);
  const runs = big ? Math.min(RUNS, 3) : RUNS;
  const floorRead = measureDoor(
    () => timedRss(process.execPath, [FLOOR, 'check', pkiDir, String(n), 'read'], { check: exitZero }),
    { runs },
  );
  const floorVerify = measureDoor(
    () => timedRss(process.execPath, [FLOOR, 'check', pkiDir, String(n), 'verify'], { check: exitZero }),
    { runs },
  );
  // Cold runs door by door (each clears its caches), then the warm runs with the doors in turn, round by
  // round: a load that drifts during the bench then moves every door alike, not the last doors more.
  const go = (d) => timedRss(process.execPath, d.cmd, { cwd: pkiDir, check: d.check });
  const colds = doors.map((d) =>
    measureDoor(() => go(d), {
      before: () => {
        for (const f of d.caches) rmSync(f, { force: true });
        rmSync(CONFIG_CACHE, { recursive: true, force: true });
      },
      runs,
    }),
  );
  for (const d of doors) go(d); // every door's caches in place (a cold run above cleared the shared ones)
  const rounds = doors.map(() => []);
  for (let r = 0; r < runs; r++) doors.forEach((d, i) => rounds[i].push(go(d)));
  const warms = rounds.map((xs) => summaryOf(xs));
  const warmDomains = warms[0];
  doors.forEach((d, i) => {
    const warm = warms[i];
    const cold = colds[i];
    const row = { id: 'door', door: d.door, label: `door: ${d.door}`, kt, n, warm, cold, floorRead, floorVerify };
    row.toDomains = warm.median / warmDomains.median;
    row.cpuToDomains = warm.cpu / warmDomains.cpu;
    if (d.go && GO_RENEWER) {
      row.goRenewer = measureDoor(() => timedRss(GO_RENEWER, RENEWER_FLAGS, { cwd: pkiDir, check: exitZero }), {
        runs,
      });
    }
    results.push(row);
    const f = (x) => (x < 1 ? `${(x * 1000).toFixed(0)} ms` : `${x.toFixed(2)} s`);
    log(
      `  ${d.door.padEnd(30)} warm ${f(warm.median).padStart(8)} (${f(warm.min)}–${f(warm.max)}) ${warm.rss.toFixed(0)} MB` +
        `   cold ${f(cold.median).padStart(8)} (${f(cold.min)}–${f(cold.max)}) ${cold.rss.toFixed(0)} MB` +
        `   ${row.toDomains.toFixed(2)}× domains   CPU ${warm.cpu.toFixed(2)} s, ${row.cpuToDomains.toFixed(2)}× domains, ${(warm.cpu / floorRead.cpu).toFixed(1)}× the floor's` +
        (row.goRenewer
          ? `   Go ocsprenewer ${f(row.goRenewer.median)} ${row.goRenewer.rss.toFixed(0)} MB: ${(warm.median / row.goRenewer.median).toFixed(2)}×`
          : ''),
    );
  });
}

/** The configuration load alone, nothing cached: `loadConfig` of the `domains` file in a fresh process. */
async function loadPass(kt, n) {
  const pkiDir = join(BENCH_DIR, `pki-${kt}-${n}`);
  await buildBenchPki({ dir: pkiDir, n, keyType: kt, log });
  const cfg = writeConfig(pkiDir, n, 'bench-check.yaml');
  const script = `const { loadConfig } = await import(${JSON.stringify(join(ROOT, 'dist', 'config', 'index.js'))});
const c = await loadConfig(${JSON.stringify(cfg)});
if (c.targets.length !== ${n}) process.exit(1);`;
  const value = measureDoor(
    () => timedRss(process.execPath, ['--input-type=module', '-e', script], { cwd: pkiDir, check: exitZero }),
    { runs: n >= 100000 ? Math.min(RUNS, 3) : RUNS },
  );
  results.push({ id: 'load', label: '(g) configuration load, no cache', kt, n, value, rss: value.rss });
  const f = (x) => (x < 1 ? `${(x * 1000).toFixed(0)} ms` : `${x.toFixed(2)} s`);
  log(
    `  (g) configuration load, nothing cached, N = ${n.toLocaleString('en')}: ${f(value.median)}, ${value.rss.toFixed(0)} MB`,
  );
}

// ---------------------------------------------------------------- (f) the daemon

const CLK_TCK = 100;
function procStat(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { cpuSeconds: (Number(f[11]) + Number(f[12])) / CLK_TCK };
}
function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the process has used no CPU for `quietMs` (its start-up pass is over). */
async function settle(pid, quietMs = 3000, maxMs = 120_000) {
  const t0 = Date.now();
  let last = procStat(pid).cpuSeconds;
  let quietSince = Date.now();
  while (Date.now() - t0 < maxMs) {
    await sleep(250);
    const now = procStat(pid).cpuSeconds;
    if (now > last) {
      last = now;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= quietMs) return (Date.now() - t0 - quietMs) / 1000;
  }
  throw new Error('the process never went idle');
}

/**
 * The daemon's figures once its first pass is over: RSS right then, RSS
 * after V8 has had time to give back what the pass used (its memory reducer
 * runs a full GC about 45 s into an idle period here: ~0.3 s of CPU that
 * would otherwise land in the idle window), and the CPU used over a later
 * idle window (fraction of one core).
 */
async function idleFigures(pid, steadyS, windowS) {
  const startup = await settle(pid);
  const rssAfterPass = rssMb(pid);
  await sleep(steadyS * 1000);
  const cpu0 = procStat(pid).cpuSeconds;
  await sleep(windowS * 1000);
  const idleCpu = (procStat(pid).cpuSeconds - cpu0) / windowS;
  return { startup, rssAfterPass, rss: rssMb(pid), idleCpu };
}

async function daemonPass() {
  if (!DAEMON) return;
  if (!existsSync(join(ROOT, 'dist', 'daemon', 'daemon.js'))) {
    log('\n(f) daemon: pending (dist/daemon/daemon.js does not exist yet)');
    results.push({ id: 'f', label: '(f) daemon', pending: true });
    return;
  }
  const n = Math.max(...NS);
  const kt = KEYS[0];
  const pkiDir = join(BENCH_DIR, `pki-${kt}-${n}`);
  await buildBenchPki({ dir: pkiDir, n, keyType: kt, log });
  const cfg = writeConfig(pkiDir, n, 'bench-daemon.yaml');
  log(
    `\n(f) daemon with ${n.toLocaleString('en')} certificates (${kt}): RSS after the first pass and ${quick ? 20 : 75} s later, then CPU over ${quick ? 10 : 30} s idle`,
  );
  const child = spawn(process.execPath, [BIN, 'daemon', '-c', cfg], {
    cwd: pkiDir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const floorChild = spawn(process.execPath, [FLOOR, 'idle', pkiDir, String(n)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await sleep(500);
    if (child.exitCode !== null) throw new Error(`the daemon exited (${child.exitCode}): ${stderr}`);
    const d = await idleFigures(child.pid, quick ? 20 : 75, quick ? 10 : 30);
    const floorRss = rssMb(floorChild.pid);
    const floorCpu0 = procStat(floorChild.pid).cpuSeconds;
    await sleep(2000);
    const floorIdle = (procStat(floorChild.pid).cpuSeconds - floorCpu0) / 2;
    results.push({
      id: 'f',
      label: '(f) daemon',
      kt,
      n,
      rss: d.rss,
      rssAfterPass: d.rssAfterPass,
      idleCpu: d.idleCpu,
      startup: d.startup,
      floorRss,
      floorIdle,
      target: 150,
    });
    log(
      `  (f) daemon RSS ${d.rss.toFixed(0)} MB steady, ${d.rssAfterPass.toFixed(0)} MB right after its first pass ` +
        `(floor ${floorRss.toFixed(0)} MB, ${(d.rss / floorRss).toFixed(1)}×; target ≤ 150 MB ${d.rss <= 150 ? 'met' : 'MISSED'}); ` +
        `idle CPU ${(d.idleCpu * 100).toFixed(2)} % of a core (floor ${(floorIdle * 100).toFixed(2)} %); first pass done after ~${d.startup.toFixed(1)} s`,
    );
  } finally {
    child.kill('SIGTERM');
    floorChild.kill('SIGTERM');
    await sleep(300);
  }
}

// ---------------------------------------------------------------- main

function markdown() {
  const f = (x) => (x < 1 ? `${(x * 1000).toFixed(0)} ms` : `${x.toFixed(2)} s`);
  const lines = [
    '| figure | key | N | median | min–max | floor | ratio | target |',
    '|---|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (r.pending) {
      lines.push(`| ${r.label} | | | pending | | | | ≤ 150 MB, idle |`);
      continue;
    }
    if (r.id === 'door' || r.id === 'load') continue; // their own tables, below
    if (r.id === 'f') {
      lines.push(
        `| ${r.label}: steady RSS / idle CPU | ${r.kt} | ${r.n.toLocaleString('en')} | ${r.rss.toFixed(0)} MB / ${(r.idleCpu * 100).toFixed(2)} % | ${r.rssAfterPass.toFixed(0)} MB right after the first pass | ${r.floorRss.toFixed(0)} MB / ${(r.floorIdle * 100).toFixed(2)} % | ${(r.rss / r.floorRss).toFixed(1)}× | ≤ 150 MB ${r.rss <= 150 ? '✓' : '✗'} |`,
      );
      continue;
    }
    lines.push(
      `| ${r.label} | ${r.kt} | ${r.n ? r.n.toLocaleString('en') : ''} | ${f(r.value.median)} | ${f(r.value.min)}–${f(r.value.max)} | ${r.floor ? f(r.floor.median) : ''} | ${r.floor ? `${(r.value.median / r.floor.median).toFixed(1)}×` : ''} | ${r.target ? `≤ ${f(r.target)} ${r.value.median <= r.target ? '✓' : '✗'}` : ''} |`,
    );
  }
  const doors = results.filter((r) => r.id === 'door');
  if (doors.length > 0) {
    lines.push(
      '',
      '| door | key | N | warm median (min–max) | warm RSS | cold median (min–max) | cold RSS | floor warm / cold | warm ÷ floor | warm ÷ domains | warm CPU (÷ domains, ÷ floor) | Go ocsprenewer | ÷ Go |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const r of doors) {
      lines.push(
        `| ${r.door} | ${r.kt} | ${r.n.toLocaleString('en')} | ${f(r.warm.median)} (${f(r.warm.min)}–${f(r.warm.max)}) | ${r.warm.rss.toFixed(0)} MB | ${f(r.cold.median)} (${f(r.cold.min)}–${f(r.cold.max)}) | ${r.cold.rss.toFixed(0)} MB | ${f(r.floorRead.median)} / ${f(r.floorVerify.median)} | ${(r.warm.median / r.floorRead.median).toFixed(1)}× | ${r.toDomains.toFixed(2)}× | ${r.warm.cpu.toFixed(2)} s (${r.cpuToDomains.toFixed(2)}×, ${(r.warm.cpu / r.floorRead.cpu).toFixed(1)}×) | ${r.goRenewer ? `${f(r.goRenewer.median)}, ${r.goRenewer.rss.toFixed(0)} MB` : ''} | ${r.goRenewer ? `${(r.warm.median / r.goRenewer.median).toFixed(2)}×` : ''} |`,
      );
    }
  }
  for (const r of results.filter((x) => x.id === 'load')) {
    lines.push(
      '',
      `${r.label}, ${r.kt}, N = ${r.n.toLocaleString('en')}: ${f(r.value.median)} (${f(r.value.min)}–${f(r.value.max)}), peak RSS ${r.rss.toFixed(0)} MB`,
    );
  }
  return lines.join('\n');
}

async function main() {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js')))
    throw new Error('run `npm run build` first (npm run bench does)');
  mkdirSync(BENCH_DIR, { recursive: true });
  const load0 = loadavg();
  log(
    `staplekeeper bench: Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${load0.map((x) => x.toFixed(2)).join(' ')}`,
  );
  log(
    `N = ${NS.join(', ')}; keys ${KEYS.join(', ')}; ${RUNS} runs; renewals at N = ${RENEW_N || 'none'}; responder ${RESPONDER}`,
  );
  if (ONLY.has('e')) startupPass();
  for (const kt of KEYS) {
    if (ONLY.has('a') || ONLY.has('b')) for (const n of NS) await checkPasses(kt, n);
    if (RENEW_N > 0 && (ONLY.has('c') || ONLY.has('d'))) await renewalPasses(kt, RENEW_N);
  }
  if (ONLY.has('doors')) for (const n of DOOR_NS) await doorPasses(KEYS[0], n);
  if (ONLY.has('load')) for (const n of DOOR_NS) await loadPass(KEYS[0], n);
  if (ONLY.has('f')) await daemonPass();
  // issue 13: the 1,000,000-entry CRL lookup (scripts/bench-crl.mjs prints its own table)
  if (ONLY.has('crl')) spawnSync(process.execPath, [join(ROOT, 'scripts', 'bench-crl.mjs')], { stdio: 'inherit' });
  const load1 = loadavg();
  const md = markdown();
  const stamp = new Date().toISOString();
  const meta = `Measured ${stamp} on Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}; load average before ${load0[0].toFixed(2)}, after ${load1[0].toFixed(2)}; ${RUNS} runs per figure; responder: ${RESPONDER}.`;
  writeFileSync(join(BENCH_DIR, 'results.md'), `${meta}\n\n${md}\n`);
  writeFileSync(
    join(BENCH_DIR, 'results.json'),
    JSON.stringify({ stamp, node: process.version, load: [load0, load1], results }, null, 2),
  );
  process.stdout.write(`\n${meta}\n\n${md}\n`);
  log(`\n(written to ${join(BENCH_DIR, 'results.md')} and results.json)`);
}

main().catch((e) => {
  log(`bench failed: ${e.stack ?? e}`);
  process.exit(1);
});
