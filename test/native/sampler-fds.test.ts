// How the sampler treats this process's own fds: kept above the low range with O_CLOEXEC, released by
// close() and by the environment cleanup hook, and a correct open/read/close fallback past the budget.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { binding } from '../../src/native.js';
import { Sampler } from '../../src/sampler/sampler.js';

const procFds = () => readdirSync('/proc/self/fd').map(Number);
const sleepers = Array.from({ length: 4 }, () => spawn('/bin/sleep', ['300'], { stdio: 'ignore' }));
const pids = sleepers.map((c) => c.pid!);
afterAll(() => {
  for (const c of sleepers) if (c.exitCode === null) process.kill(c.pid!, 'SIGKILL');
});

describe('sampler fds', () => {
  it('keeps fds above 1024 with O_CLOEXEC and releases them all on close()', () => {
    const before = new Set(procFds());
    const s = new Sampler({ fields: 'all' });
    for (const pid of pids) s.watch(pid);
    s.sample();
    const kept = procFds().filter((fd) => !before.has(fd));
    // stat, statm, status, io and the fd directory of each process
    expect(kept.length).toBeGreaterThanOrEqual(5 * pids.length);
    for (const fd of kept) {
      expect(fd).toBeGreaterThanOrEqual(1024);
      const flags = Number.parseInt(
        /flags:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!,
        8,
      );
      expect(flags & 0o2000000).toBe(0o2000000); // O_CLOEXEC
    }
    s.close();
    expect(procFds().filter((fd) => !before.has(fd))).toEqual([]);
    expect(() => s.sample()).toThrow(/closed/);
  });

  it('releases every fd when a worker thread that never called close() ends', async () => {
    const before = new Set(procFds());
    const index = pathToFileURL(path.resolve(import.meta.dirname, '../../dist/index.js')).href;
    const code = `
      import { parentPort } from 'node:worker_threads';
      import { Sampler } from '${index}';
      const s = new Sampler({ fields: 'all' });
      for (const pid of ${JSON.stringify(pids)}) s.watch(pid);
      s.sample();
      parentPort.postMessage('sampled');
      setInterval(() => {}, 1000);`;
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
    await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(procFds().filter((fd) => !before.has(fd)).length).toBeGreaterThanOrEqual(5 * pids.length);
    await w.terminate();
    expect(procFds().filter((fd) => !before.has(fd))).toEqual([]);
  });

  it('reads by path past the fd budget, with the same values and the same exit detection', async () => {
    const native = binding();
    const original = native.fdBudget().limit;
    const inUse = native.fdBudget().inUse;
    try {
      native.fdBudget(inUse); // nothing more may be kept
      const before = new Set(procFds());
      const s = new Sampler({ fields: ['comm', 'threads', 'rssBytes', 'fds'] });
      const victim = spawn('/bin/sleep', ['300'], { stdio: 'ignore' });
      for (const pid of [...pids, victim.pid!]) s.watch(pid);
      const snap = s.sample();
      expect(procFds().filter((fd) => !before.has(fd))).toEqual([]);
      for (const pid of pids) {
        expect(snap.get(pid)).toMatchObject({ comm: 'sleep', threads: 1 });
        expect(snap.get(pid)!.fds).toBe(readdirSync(`/proc/${pid}/fd`).length);
      }
      victim.kill('SIGKILL');
      await new Promise((r) => victim.once('exit', r));
      const after = s.sample();
      expect(after.exited.map((e) => e.pid)).toEqual([victim.pid]);
      expect(after.get(victim.pid!)).toBeUndefined();
      s.close();
    } finally {
      native.fdBudget(original);
    }
  });
});
