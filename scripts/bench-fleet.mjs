#!/usr/bin/env node
/**
 * The fleet figure (docs/PERFORMANCE.md "Fleet mode"): N
 * certificates, F `staplekeeper daemon` processes with `fleet.fetch: true`
 * and R with `fetch: false`, each with its own empty staple folder, one
 * `redis-server` and the fast local responder of scripts/bench.mjs
 * (pre-signed answers, counting requests per serial). Measured:
 *
 * - requests per certificate (target: exactly 1 in one refresh window) and
 *   the most requests any one certificate got;
 * - the time from starting the processes until every node has every staple
 *   (every folder holds N staples: they are written atomically);
 * - Redis memory per certificate (used_memory after minus before, / N, and
 *   MEMORY USAGE of one entry);
 * - each process's RSS once everything is in place.
 *
 *   node scripts/bench-fleet.mjs            (npm run bench runs it after bench.mjs)
 *
 * Environment: BENCH_FLEET_N=10000, BENCH_FLEET_FETCHERS=3, BENCH_FLEET_READERS=20,
 * BENCH_DIR=.bench, BENCH_FLEET_TIMEOUT_S=900. Needs `npm run build` and redis-server.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AIA_OCSP_URL, buildBenchPki } from './lib/bench-pki.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const N = Number(env.BENCH_FLEET_N ?? 10_000);
const FETCHERS = Number(env.BENCH_FLEET_FETCHERS ?? 3);
const READERS = Number(env.BENCH_FLEET_READERS ?? 20);
const TIMEOUT_S = Number(env.BENCH_FLEET_TIMEOUT_S ?? 900);
const BENCH_DIR = resolve(ROOT, env.BENCH_DIR ?? '.bench');
const BIN = join(ROOT, 'bin', 'staplekeeper');
const RESPONDER_JS = join(ROOT, 'scripts', 'lib', 'bench-responder.mjs');
const KT = 'ec-p256';

const log = (m) => process.stderr.write(`${m}\n`);
const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssMb = (pid) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
};

const cpuSeconds = (pid) => {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
};

async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function redisCli(port, ...args) {
  const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8' });
  return r.stdout.trim();
}

async function startRedis() {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 200; i++) {
    if (redisCli(port, 'PING') === 'PONG') return { port, child };
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not answer PING');
}

async function startResponder(pkiDir) {
  const child = spawn(process.execPath, [RESPONDER_JS, join(pkiDir, 'responses'), '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, BENCH_COUNTS: '1' },
  });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
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
    pid: child.pid,
    url: `http://127.0.0.1:${port}/ocsp`,
    /** Stops it and returns its request counts. */
    stop: () =>
      new Promise((r) => {
        child.once('exit', () => {
          const m = /counts: (\{.*\})/.exec(err);
          r(m ? JSON.parse(m[1]) : undefined);
        });
        child.kill('SIGTERM');
      }),
  };
}

/** One node's configuration: absolute paths, its own staple folder, the shared fleet. */
function nodeConfig(pkiDir, nodeDir, { redisPort, responderUrl, fetch }) {
  const lines = [
    `ocsp_folder: ${join(nodeDir, 'staples')}`,
    'responders:',
    `  "${AIA_OCSP_URL}": "${responderUrl}"`,
    'daemon:',
    '  watch: false',
    'fleet:',
    `  redis: redis://127.0.0.1:${redisPort}/0`,
    `  fetch: ${fetch}`,
    'domains:',
  ];
  for (let i = 1; i <= N; i++) {
    const id = `d${String(i).padStart(5, '0')}`;
    lines.push(
      `  ${id}:`,
      `    cert: ${join(pkiDir, 'certs', `${id}.pem`)}`,
      `    chain: ${join(pkiDir, 'chain.pem')}`,
      `    ocsp: ${id}.der`,
    );
  }
  mkdirSync(join(nodeDir, 'staples'), { recursive: true });
  const file = join(nodeDir, 'staplekeeper.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

function stapleCount(nodeDir) {
  try {
    return readdirSync(join(nodeDir, 'staples')).filter((f) => f.endsWith('.der')).length;
  } catch {
    return 0;
  }
}

async function main() {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js')))
    throw new Error('run `npm run build` first (npm run bench does)');
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    log('bench-fleet: redis-server is not installed; the fleet figure is skipped');
    return;
  }
  const load0 = loadavg();
  log(
    `bench-fleet: N = ${N}, ${FETCHERS} fetch:true daemons + ${READERS} fetch:false daemons; load ${load0.map((x) => x.toFixed(2)).join(' ')}`,
  );
  const pkiDir = join(BENCH_DIR, `pki-${KT}-${N}`);
  await buildBenchPki({ dir: pkiDir, n: N, keyType: KT, log });
  const runDir = join(BENCH_DIR, 'fleet');
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const redis = await startRedis();
  const responder = await startResponder(pkiDir);
  const procs = [];
  try {
    const base = Number(/used_memory:(\d+)/.exec(redisCli(redis.port, 'INFO', 'memory'))?.[1] ?? 0);
    const nodes = [];
    for (let i = 0; i < FETCHERS + READERS; i++) {
      const fetch = i < FETCHERS;
      const dir = join(runDir, `${fetch ? 'fetcher' : 'reader'}-${i}`);
      nodes.push({
        dir,
        fetch,
        config: nodeConfig(pkiDir, dir, { redisPort: redis.port, responderUrl: responder.url, fetch }),
      });
    }
    const t0 = Date.now();
    for (const node of nodes) {
      const child = spawn(process.execPath, [BIN, 'daemon', '-c', node.config], {
        cwd: node.dir,
        env: { PATH: env.PATH, HOME: env.HOME, STAPLEKEEPER_CACHE_DIR: 'off', NO_COLOR: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.resume();
      node.pid = child.pid;
      procs.push(child);
    }
    let doneAt;
    const firstFull = new Map();
    while (Date.now() - t0 < TIMEOUT_S * 1000) {
      let all = true;
      for (const node of nodes) {
        if (firstFull.has(node.dir)) continue;
        if (stapleCount(node.dir) >= N) firstFull.set(node.dir, Date.now() - t0);
        else all = false;
      }
      if (all) {
        doneAt = Date.now() - t0;
        break;
      }
      await sleep(250);
    }
    const have = nodes.map((n) => stapleCount(n.dir));
    await sleep(3_000); // let stragglers (a second fetch, if any) show up in the counts
    const rss = nodes.map((n) => ({
      role: n.fetch ? 'fetch:true' : 'fetch:false',
      mb: rssMb(n.pid),
      cpuS: cpuSeconds(n.pid),
    }));
    const used = Number(/used_memory:(\d+)/.exec(redisCli(redis.port, 'INFO', 'memory'))?.[1] ?? 0);
    const keys = Number(redisCli(redis.port, 'DBSIZE'));
    const sample = redisCli(redis.port, 'RANDOMKEY');
    const sampleBytes = sample ? Number(redisCli(redis.port, 'MEMORY', 'USAGE', sample, 'SAMPLES', '0')) : NaN;
    const derBytes = sample ? Number(redisCli(redis.port, 'HSTRLEN', sample, 'der')) : NaN;
    const respCpu = cpuSeconds(responder.pid);
    const redisCpu = cpuSeconds(redis.child.pid);
    for (const c of procs) c.kill('SIGTERM');
    await sleep(1_000);
    const counts = await responder.stop();
    const load1 = loadavg();
    const fetchRss = rss.filter((r) => r.role === 'fetch:true').map((r) => r.mb);
    const readRss = rss.filter((r) => r.role === 'fetch:false').map((r) => r.mb);
    const range = (xs) => (xs.length ? `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)} MB` : '-');
    const result = {
      stamp: new Date().toISOString(),
      node: process.version,
      cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
      load: [load0, load1],
      n: N,
      fetchers: FETCHERS,
      readers: READERS,
      complete: doneAt !== undefined,
      secondsUntilEveryNodeHasEveryStaple: doneAt === undefined ? null : doneAt / 1000,
      staplesPerNode: have,
      secondsUntilFullByNode: nodes.map((n) => ({
        role: n.fetch ? 'fetch:true' : 'fetch:false',
        s: (firstFull.get(n.dir) ?? NaN) / 1000,
      })),
      requests: counts?.requests ?? null,
      requestsPerCertificate: counts ? counts.requests / N : null,
      certificatesRequested: counts?.serials ?? null,
      maxRequestsForOneCertificate: counts?.maxPerSerial ?? null,
      redisKeys: keys,
      redisBytesPerCertificate: (used - base) / N,
      redisMemoryUsageOfOneEntry: sampleBytes,
      derBytes,
      rssMb: rss,
    };
    writeFileSync(join(BENCH_DIR, 'fleet-results.json'), JSON.stringify(result, null, 2));
    const md = [
      `Measured ${result.stamp} on Node ${process.version}, ${result.cpus}; load average before ${load0[0].toFixed(2)}, after ${load1[0].toFixed(2)}.`,
      '',
      `| fleet: ${N} certificates, ${FETCHERS} daemons (fetch: true) + ${READERS} daemons (fetch: false), one Redis, the fast local responder | |`,
      '| --- | --- |',
      `| requests per certificate (target: exactly 1) | ${result.requestsPerCertificate?.toFixed(3) ?? '?'} (${result.requests} requests, ${result.certificatesRequested} certificates, at most ${result.maxRequestsForOneCertificate} for one) |`,
      `| time until every node has every staple | ${doneAt === undefined ? `not reached in ${TIMEOUT_S} s (${have.join(', ')})` : `${(doneAt / 1000).toFixed(1)} s`} |`,
      `| Redis memory per certificate | ${result.redisBytesPerCertificate.toFixed(0)} bytes (used_memory delta / N); one entry: MEMORY USAGE ${sampleBytes} bytes, of which DER ${derBytes} |`,
      `| RSS, fetch: true daemons | ${range(fetchRss)} (${fetchRss.map((x) => x.toFixed(0)).join(', ')}) |`,
      `| RSS, fetch: false daemons | ${range(readRss)} (median ${readRss.sort((a, b) => a - b)[Math.floor(readRss.length / 2)]?.toFixed(0) ?? '-'} MB) |`,
      `| CPU time per process until then | fetch: true ${rss
        .filter((r) => r.role === 'fetch:true')
        .map((r) => r.cpuS.toFixed(1))
        .join(
          ', ',
        )} s; fetch: false median ${median(rss.filter((r) => r.role === 'fetch:false').map((r) => r.cpuS))?.toFixed(1) ?? '-'} s; the responder ${respCpu.toFixed(1)} s; Redis ${redisCpu.toFixed(1)} s |`,
    ].join('\n');
    writeFileSync(join(BENCH_DIR, 'fleet-results.md'), `${md}\n`);
    process.stdout.write(`\n${md}\n`);
    log(`\n(written to ${join(BENCH_DIR, 'fleet-results.md')} and fleet-results.json)`);
  } finally {
    for (const c of procs) if (c.exitCode === null) c.kill('SIGKILL');
    redis.child.kill('SIGKILL');
  }
}

main().catch((e) => {
  log(`bench-fleet failed: ${e.stack ?? e}`);
  process.exit(1);
});
