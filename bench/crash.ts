// Crash capture benchmark: time from the crash (the fixture told to dereference NULL) to the core file
// complete, for tripdump's pipe handler, tripdump's socket-mode server and the kernel writing a plain
// `core` file, at 16 MiB and 1 GiB of touched memory. Pipe/socket: until the notification arrives (the
// handler sends it once the core and its JSON are linked); kernel: until the crashed process is reaped
// (the kernel finishes the file before the process exits). Also the time the crashing process is held.
// Changes core_pattern (root only) and restores it byte for byte, whatever happens.
//
// Run: npm run build && tsc -p bench/tsconfig.json && node build/bench/crash.js   (BENCH_CRASH_SIZES=16,1024)
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT =
  process.env.TRIPDUMP_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const HANDLER = path.join(ROOT, 'build', 'Release', 'tripdump-crash-handler');
const CRASHER = path.join(ROOT, 'build', 'fixtures', 'crasher');
const SIZES = (process.env.BENCH_CRASH_SIZES ?? '16,1024').split(',').map(Number);
const RUNS = Number(process.env.BENCH_CRASH_RUNS ?? 3);
const PATTERN = '/proc/sys/kernel/core_pattern';

function writeSysctl(file: string, value: Buffer | string): void {
  const b = Buffer.from(value);
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, b.length && b[b.length - 1] === 10 ? b.subarray(0, -1) : b);
  } finally {
    closeSync(fd);
  }
}

function startCrasher(mib: number): Promise<ChildProcess> {
  const child = spawn('sh', ['-c', 'ulimit -c unlimited; exec "$0" "$@"', CRASHER, String(mib)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve(child);
    });
    child.once('exit', () => reject(new Error('crasher exited early')));
  });
}

interface Run {
  complete: number;
  reaped: number;
  size: number;
  disk: number;
}

async function once(
  mode: 'pipe' | 'socket' | 'kernel',
  mib: number,
  dir: string,
  notify: string,
): Promise<Run> {
  for (const f of readdirSync(dir)) rmSync(path.join(dir, f));
  let notified: (() => void) | undefined;
  const gotNotification = new Promise<void>((r) => {
    notified = r;
  });
  const server = net.createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => notified?.());
  });
  if (mode !== 'kernel') await new Promise<void>((r) => server.listen(notify, r));
  const child = await startCrasher(mib);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const t0 = performance.now();
  child.stdin!.write('go\n');
  let reaped = 0;
  await exited.then(() => {
    reaped = performance.now() - t0;
  });
  if (mode !== 'kernel')
    await Promise.race([
      gotNotification,
      new Promise((_, j) => setTimeout(() => j(new Error('no notification')), 60_000)),
    ]);
  const complete = mode === 'kernel' ? reaped : performance.now() - t0;
  server.close();
  const core = readdirSync(dir).find((f) => f.endsWith('.core') || f.startsWith('core.'));
  const st = core ? statSync(path.join(dir, core)) : undefined;
  return { complete, reaped, size: st?.size ?? 0, disk: (st?.blocks ?? 0) * 512 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('bench/crash: needs root (it changes core_pattern)');
    return;
  }
  const before = readFileSync(PATTERN);
  const root = mkdtempSync(path.join('/tmp', 'tdb-'));
  const dir = path.join(root, 'cores');
  const config = path.join(root, 'c.conf');
  const notify = path.join(root, 'n.sock');
  const coreSock = path.join(root, 'core.sock');

  mkdirSync(dir, { mode: 0o755 });
  writeFileSync(config, `dir=${dir}\nsocket=${notify}\n`, { mode: 0o600 });
  const rows: string[][] = [];
  let serve: ChildProcess | undefined;
  try {
    for (const mib of SIZES) {
      for (const mode of ['kernel', 'pipe', 'socket'] as const) {
        if (mode === 'kernel') writeSysctl(PATTERN, `${dir}/core.%p`);
        else if (mode === 'pipe')
          writeSysctl(PATTERN, `|${HANDLER} -c ${config} %P %p %u %g %s %t %c %h %e %d %F`);
        else {
          serve = spawn(HANDLER, ['serve', '-c', config, '--listen', coreSock], {
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          await new Promise<void>((r) => serve!.stdout!.once('data', () => r()));
          writeSysctl(PATTERN, `@${coreSock}`);
        }
        const runs: Run[] = [];
        for (let i = 0; i < RUNS; i++) runs.push(await once(mode, mib, dir, notify));
        writeSysctl(PATTERN, before);
        if (serve?.pid) {
          process.kill(serve.pid, 'SIGTERM');
          serve = undefined;
        }
        rows.push([
          `${mib} MiB`,
          mode === 'kernel' ? 'kernel plain core' : `tripdump ${mode}`,
          median(runs.map((r) => r.complete)).toFixed(1),
          median(runs.map((r) => r.reaped)).toFixed(1),
          ((runs[0]?.size ?? 0) / 2 ** 20).toFixed(1),
          ((runs[0]?.disk ?? 0) / 2 ** 20).toFixed(1),
        ]);
      }
    }
  } finally {
    if (!readFileSync(PATTERN).equals(before)) writeSysctl(PATTERN, before);
    if (serve?.pid) process.kill(serve.pid, 'SIGTERM');
    rmSync(root, { recursive: true, force: true });
  }
  console.log(
    `crash capture, ${os.cpus().length} CPUs, kernel ${os.release()}, node ${process.version}, median of ${RUNS}`,
  );
  const head = ['target', 'writer', 'crash→core+notify ms', 'crash→reaped ms', 'core MiB', 'on disk MiB'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [head, ...rows]) console.log(r.map((v, i) => v.padEnd(w[i] ?? 0)).join('  '));
}

await main();
