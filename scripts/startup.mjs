#!/usr/bin/env node
// Start-up of the three forms: `--version` of bin/staplekeeper (dist/ and
// node_modules), dist/staplekeeper.mjs (`npm run bundle`) and
// dist/staplekeeper-linux-x64 (`npm run sea`), run in turn so that load on the
// machine falls on all of them alike; prints the median and min–max wall time
// of each, the mean CPU time (user + system, from /proc/self/stat's counters
// of waited-for children: far less sensitive to other load than wall time),
// and the binary's ratio to the one file (docs/PERFORMANCE.md).
//
//   npm run bundle && npm run sea && node scripts/startup.mjs [RUNS]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[2] ?? 30);
const forms = [
  ['npm package (bin/staplekeeper)', process.execPath, [join(root, 'bin', 'staplekeeper')]],
  ['one file (node staplekeeper.mjs)', process.execPath, [join(root, 'dist', 'staplekeeper.mjs')]],
  ['one binary (staplekeeper-linux-x64)', join(root, 'dist', `staplekeeper-${process.platform}-${process.arch}`), []],
];
for (const [name, file, args] of forms) {
  const target = args[0] ?? file;
  if (!existsSync(target)) throw new Error(`${target} is missing (${name}): npm run build / bundle / sea first`);
}
/** CPU time of this process's waited-for children so far, in ms (cutime + cstime, clock ticks of 10 ms). */
function childCpuMs() {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
}
const times = forms.map(() => []);
const cpu = forms.map(() => 0);
for (let i = 0; i < runs + 2; i++) {
  forms.forEach(([, file, args], k) => {
    const c = childCpuMs();
    const t = process.hrtime.bigint();
    const r = spawnSync(file, [...args, '--version'], { encoding: 'utf8' });
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    if (i >= 2) cpu[k] += childCpuMs() - c;
    if (r.status !== 0) throw new Error(`${file} --version: exit ${r.status}: ${r.stderr}`);
    if (i >= 2) times[k].push(ms); // two warm-up rounds (page cache)
  });
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
forms.forEach(([name, file, args], k) => {
  const a = times[k];
  const size = k === 0 ? '' : `, ${(statSync(args[0] ?? file).size / 1e6).toFixed(1)} MB`;
  console.log(
    `${name}: ${median(a).toFixed(0)} ms (${Math.min(...a).toFixed(0)}–${Math.max(...a).toFixed(0)} ms), CPU ${(cpu[k] / runs).toFixed(0)} ms${size}`,
  );
});
console.log(
  `binary / one file: ${(median(times[2]) / median(times[1])).toFixed(2)}× wall, ${(cpu[2] / cpu[1]).toFixed(2)}× CPU`,
);
