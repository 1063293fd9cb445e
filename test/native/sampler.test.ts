// The Sampler against real processes: each test puts a target (test/fixtures/sampler_target.c) into a
// known state and compares what the sampler reports with what the target says it did and with /proc,
// read independently here.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FIELD_NAMES,
  type FieldName,
  fdBudget,
  ProcessGoneError,
  ROW_NEW,
  ROW_THREAD,
  Sampler,
} from '../../src/index.js';
import {
  fdCount,
  procStat,
  procStatus,
  type SpawnTargetOptions,
  sleep,
  socketCount,
  spawnTarget,
  statusBytes,
  type Target,
  taskIds,
  trackProcesses,
  waitFor,
} from '../helpers/processes.js';
import { needsRoot, nobodyCanRun } from '../helpers/requirements.js';

const track = trackProcesses();
const isRoot = process.getuid?.() === 0;

async function target(args: string[] = [], opts?: SpawnTargetOptions): Promise<Target> {
  return track(await spawnTarget('sampler_target', args, opts));
}

/** Runs fn with a sampler that is closed afterwards whatever happens. */
async function withSampler<T>(
  options: ConstructorParameters<typeof Sampler>[0],
  fn: (s: Sampler) => T | Promise<T>,
) {
  const s = new Sampler(options);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

/** Waits until the target sleeps: after printing "ready" it may still be on its way into pause(). */
async function asleep(t: Target): Promise<void> {
  await waitFor(() => procStat(t.pid).state === 'S', 5_000, `pid ${t.pid} to sleep`);
}

/** User + system ticks of a process, read from /proc now. */
function ticks(pid: number): number {
  const f = procStat(pid).fields;
  return Number(f[14 - 3]) + Number(f[15 - 3]);
}

/** How many of fds 0-2 of a process are sockets. */
function stdioSockets(pid: number): number {
  return [0, 1, 2].filter((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:[')).length;
}

/** A pid that names no process right now: a child of ours that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const t = await target();
  await t.kill();
  return t.pid;
}

describe('Sampler: values of one process', () => {
  it('counts threads exactly', async () => {
    const t = await target(['--threads', '5']);
    await withSampler({ fields: ['threads', 'comm'] }, (s) => {
      s.watch(t.pid);
      const rec = s.sample().get(t.pid);
      expect(rec?.threads).toBe(5);
      expect(rec?.threads).toBe(Number(procStatus(t.pid).Threads));
      expect(rec?.threads).toBe(taskIds(t.pid).length);
      expect(rec?.comm).toBe('sampler_target');
    });
  });

  it('counts fds and sockets exactly', async () => {
    const t = await target(['--fds', '4', '--sockets', '3']);
    await withSampler({ fields: ['fds', 'sockets'] }, (s) => {
      s.watch(t.pid);
      const rec = s.sample().get(t.pid);
      expect(rec?.fds).toBe(t.value('fds'));
      expect(rec?.fds).toBe(fdCount(t.pid));
      expect(rec?.sockets).toBe(t.value('socket-fds'));
      expect(rec?.sockets).toBe(socketCount(t.pid));
      // Node's stdio pipes are socketpairs too: the three made by --sockets come on top of those.
      expect(rec!.sockets! - stdioSockets(t.pid)).toBe(3);
    });
  });

  it('reports touched memory in rssBytes, close to VmRSS', async () => {
    const touched = 64 << 20;
    const t = await target(['--touch', '64']);
    expect(t.value('touched')).toBe(touched);
    await withSampler({ fields: ['rssBytes', 'rssAnonBytes', 'hwmBytes', 'vmBytes'] }, (s) => {
      s.watch(t.pid);
      const rec = s.sample().get(t.pid)!;
      const vmRss = statusBytes(t.pid, 'VmRSS');
      expect(rec.rssBytes).toBeGreaterThanOrEqual(touched);
      expect(Math.abs(rec.rssBytes! - vmRss)).toBeLessThanOrEqual(Math.max(1 << 20, vmRss * 0.02));
      expect(rec.rssAnonBytes).toBeGreaterThanOrEqual(touched);
      expect(rec.rssAnonBytes).toBe(statusBytes(t.pid, 'RssAnon'));
      expect(rec.hwmBytes).toBeGreaterThanOrEqual(touched);
      expect(rec.vmBytes).toBe(Number(procStat(t.pid).fields[23 - 3]));
    });
  });

  it('reports a comm holding ") (" exactly, and the fields after it', async () => {
    for (const comm of ['a) b (c', 'x) S 1 2 (y) z w']) {
      const t = await target(['--comm', comm]);
      await asleep(t);
      const truth = procStat(t.pid);
      expect(truth.comm).toBe(comm.slice(0, 15)); // the kernel keeps 15 bytes
      await withSampler({ fields: ['comm', 'ppid', 'pgid', 'state', 'pid', 'tgid'] }, (s) => {
        s.watch(t.pid);
        const rec = s.sample().get(t.pid);
        expect(rec).toEqual({
          pid: t.pid,
          tgid: t.pid,
          comm: truth.comm,
          ppid: process.pid,
          pgid: truth.pgrp,
          state: 'S',
        });
      });
      await t.kill();
    }
  });

  it("reports a zombie with state 'Z'", async () => {
    const t = await target(['--zombie']);
    const zombie = t.value('zombie')!;
    expect(procStat(zombie).state).toBe('Z');
    await withSampler({ fields: ['state', 'ppid', 'comm'] }, (s) => {
      s.watch(zombie);
      const snap = s.sample();
      expect(snap.get(zombie)).toMatchObject({ state: 'Z', ppid: t.pid });
      expect([...snap.records()].map((r) => r.pid)).toContain(zombie);
    });
  });

  it('gives the startTime of the process as epoch ms', async () => {
    const before = Date.now();
    const t = await target();
    await withSampler({ fields: ['startTime'] }, (s) => {
      const id = s.watch(t.pid);
      // 10 ms clock ticks, and btime is whole seconds: allow a second either way.
      expect(id.startTime).toBeGreaterThan(before - 1_000);
      expect(id.startTime).toBeLessThan(Date.now() + 1_000);
      expect(s.sample().get(t.pid)?.startTime).toBe(id.startTime);
    });
  });
});

describe('Sampler: unavailable is null, never 0', () => {
  it('reports io and fds of a process it may not read as null', async () => {
    const fields: FieldName[] = ['rssBytes', 'readBytes', 'writeBytes', 'fds', 'threads'];
    if (!isRoot) {
      // A kernel thread of root: io and fd need ptrace access we do not have.
      expect(() => readFileSync('/proc/2/io')).toThrow(/EACCES/);
      await withSampler({ fields }, (s) => {
        s.watch(2);
        const rec = s.sample().get(2);
        expect(rec).toMatchObject({ readBytes: null, writeBytes: null, fds: null, threads: 1 });
      });
      return;
    }
    // As root everything is readable, so the sampler runs as nobody against a target of root's.
    if (!nobodyCanRun('sampling as another user')) return;
    const dist = path.resolve(import.meta.dirname, '../../dist/index.js');
    expect(existsSync(dist), `${dist} is missing: run npm run build`).toBe(true);
    const t = await target(['--threads', '2']);
    const script = `
      import { readFileSync } from 'node:fs';
      import { Sampler } from ${JSON.stringify(dist)};
      const pid = ${t.pid};
      let ioReadable = true;
      try { readFileSync('/proc/' + pid + '/io'); } catch (e) { ioReadable = e.code; }
      const s = new Sampler({ fields: ${JSON.stringify(fields)} });
      let record, error;
      try {
        s.watch(pid);
        record = s.sample().get(pid) ?? 'missing';
      } catch (e) {
        error = e.name + ': ' + e.message;
      } finally {
        s.close();
      }
      console.log(JSON.stringify({ uid: process.getuid(), ioReadable, record, error }));`;
    const child = track(
      spawn(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          '--input-type=module',
          '-e',
          script,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' },
      ),
    );
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, err).toBe(0);
    const result = JSON.parse(out) as {
      uid: number;
      ioReadable: true | string;
      record?: Record<string, unknown> | 'missing';
      error?: string;
    };
    expect(result.uid).toBe(65534);
    expect(result.ioReadable).toBe('EACCES'); // the premise: nobody really cannot read it
    expect(result.error).toBeUndefined();
    expect(result.record).toMatchObject({
      pid: t.pid,
      readBytes: null,
      writeBytes: null,
      fds: null,
      threads: 2,
    });
    // stat stays readable to anyone: its values are real numbers, not nulls.
    const rss = (result.record as Record<string, unknown>).rssBytes;
    expect(typeof rss).toBe('number');
    expect(Math.abs((rss as number) - statusBytes(t.pid, 'VmRSS'))).toBeLessThanOrEqual(1 << 20);
  });

  it('has cpuPercent null on the first sample of a process', async () => {
    const t = await target();
    await withSampler({ fields: ['cpuPercent'] }, (s) => {
      s.watch(t.pid);
      expect(s.sample().get(t.pid)).toEqual({ pid: t.pid, cpuPercent: null });
    });
  });
});

describe('Sampler: columns in place', () => {
  it('gives row-aligned columns over native memory, NaN and a bit where unavailable, flags for new and thread rows', async () => {
    const multi = await target(['--threads', '3']);
    const single = await target();
    const fields: FieldName[] = ['cpuPercent', 'threads', 'rssBytes'];
    const bit = (f: FieldName) => 2 ** FIELD_NAMES.indexOf(f);
    await withSampler({ fields, keep: 2 }, async (s) => {
      s.watch(multi.pid, { threads: true });
      s.watch(single.pid);
      const first = s.sample();
      // One row per process and per extra thread of the multi-threaded one, as the kernel lists them.
      const threadRows = taskIds(multi.pid).filter((tid) => tid !== multi.pid);
      expect([...first.pids].sort((a, b) => a - b)).toEqual(
        [multi.pid, single.pid, ...threadRows].sort((a, b) => a - b),
      );
      const threads = first.column('threads');
      const rss = first.column('rssBytes');
      expect(threads.length).toBe(first.length);
      for (let r = 0; r < first.length; r++) {
        const pid = first.pids[r]!;
        const rec = first.record(r);
        expect(rec.pid).toBe(pid);
        expect(threads[r]).toBe(rec.threads);
        expect(rss[r]).toBe(rec.rssBytes);
        expect(rss[r]).toBeGreaterThan(0);
        expect(Number.isNaN(first.column('cpuPercent')[r]!)).toBe(true); // no interval yet
        expect(first.unavailable[r]! & bit('cpuPercent')).toBe(bit('cpuPercent'));
        expect(first.flags[r]! & ROW_NEW).toBe(ROW_NEW);
        expect((first.flags[r]! & ROW_THREAD) !== 0).toBe(threadRows.includes(pid));
      }
      expect(() => first.column('fds')).toThrow(/field 'fds' was not sampled/);

      const second = s.sample();
      for (let r = 0; r < second.length; r++) {
        expect(second.flags[r]! & ROW_NEW).toBe(0);
        expect(second.column('cpuPercent')[r]).toBeGreaterThanOrEqual(0);
        expect(second.unavailable[r]! & bit('cpuPercent')).toBe(0);
      }
      // keep: 2 rotates two native blocks: the third sweep writes over the first one's memory, which a
      // view taken from the first snapshot sees, and the snapshot itself refuses further reads.
      const view = first.column('threads');
      view.fill(-1);
      expect(first.valid).toBe(true);
      const third = s.sample();
      expect(first.valid).toBe(false);
      expect(second.valid).toBe(true);
      expect(view.buffer).toBe(third.column('threads').buffer);
      expect([...view.subarray(0, third.length)]).toEqual([...third.column('threads')]);
      expect(view.includes(-1)).toBe(false);
      expect(() => first.column('threads')).toThrow(/stale/);
    });
  });
});

describe('Sampler: change bits', () => {
  it("sets a field's bit exactly when its value differs from the previous sweep", async () => {
    const spinner = await target(['--spin']);
    const idle = await target();
    await asleep(idle);
    const fields: FieldName[] = [
      'state',
      'comm',
      'threads',
      'userTicks',
      'rssBytes',
      'sharedBytes',
      'readChars',
    ];
    const bit = (f: FieldName) => 2 ** FIELD_NAMES.indexOf(f);
    const all = fields.reduce((m, f) => m | bit(f), 0);
    await withSampler({ fields }, async (s) => {
      s.watch(spinner.pid);
      s.watch(idle.pid);
      const first = s.sample();
      const before = new Map([spinner.pid, idle.pid].map((pid) => [pid, first.get(pid)!]));
      for (const pid of before.keys()) expect(first.changed[first.rowOf(pid)]! & all).toBe(all); // new rows
      const t0 = ticks(spinner.pid);
      await waitFor(() => ticks(spinner.pid) >= t0 + 2, 10_000, 'the spinner to use CPU');
      const second = s.sample();
      for (const [pid, old] of before) {
        const now = second.get(pid)!;
        const bits = second.changed[second.rowOf(pid)]!;
        for (const f of fields)
          expect([pid, f, (bits & bit(f)) !== 0]).toEqual([pid, f, !Object.is(now[f], old[f])]);
      }
      // What the kernel says happened: the spinner's CPU time moved, nothing of the sleeper did.
      expect(second.changed[second.rowOf(spinner.pid)]! & bit('userTicks')).toBe(bit('userTicks'));
      expect(second.changed[second.rowOf(idle.pid)]! & all).toBe(0);
    });
  });
});

describe('Sampler: processes coming and going', () => {
  it('reports a process that exits between samples once in exited, then never again', async () => {
    const t = await target(['--exit-after', '300']);
    await withSampler({ fields: ['comm'] }, async (s) => {
      const id = s.watch(t.pid);
      const first = s.sample();
      expect(first.get(t.pid)?.comm).toBe('sampler_target');
      expect(first.started).toContainEqual(id);
      await waitFor(() => t.exited, 5_000, 'the target to exit');
      const second = s.sample();
      expect(second.exited).toEqual([id]);
      expect(second.get(t.pid)).toBeUndefined();
      const third = s.sample();
      expect(third.exited).toEqual([]);
      expect(third.get(t.pid)).toBeUndefined();
    });
  });

  it('never aliases a reused pid: the old identity exits, a new watch has a new startTime and new data', async (ctx) => {
    if (!needsRoot('writing /proc/sys/kernel/ns_last_pid')) ctx.skip();
    const old = await target(['--threads', '3', '--comm', 'reuse-old']);
    await withSampler({ fields: ['comm', 'threads', 'startTime'] }, async (s) => {
      const oldId = s.watch(old.pid);
      expect(s.sample().get(old.pid)).toMatchObject({ comm: 'reuse-old', threads: 3 });
      await old.kill();
      await sleep(30); // startTime has 10 ms resolution: make the two identities distinguishable
      let reused: Target | undefined;
      for (let attempt = 0; attempt < 20 && !reused; attempt++) {
        writeFileSync('/proc/sys/kernel/ns_last_pid', String(old.pid - 1));
        const t = await target(['--comm', 'reuse-new']);
        if (t.pid === old.pid) reused = t;
        else await t.kill();
      }
      if (!reused) {
        console.warn(`skipped: could not get pid ${old.pid} again in 20 attempts (other processes forking)`);
        ctx.skip();
        return;
      }
      // The sampler still holds the old process's fds: it must see an exit, not the newcomer.
      const snap = s.sample();
      expect(snap.exited).toEqual([oldId]);
      expect(snap.get(old.pid)).toBeUndefined();
      const newId = s.watch(reused.pid);
      expect(newId.pid).toBe(old.pid);
      expect(newId.startTime).not.toBe(oldId.startTime);
      const next = s.sample();
      expect(next.started).toContainEqual(newId);
      expect(next.exited).toEqual([]);
      expect(next.get(old.pid)).toMatchObject({ comm: 'reuse-new', threads: 1, startTime: newId.startTime });
    });
  });

  it('follows the children of a watched process', async () => {
    const t = await target(['--fork-child']);
    const childPid = t.value('child')!;
    expect(procStat(childPid).ppid).toBe(t.pid);
    await withSampler({ fields: ['ppid', 'comm'] }, async (s) => {
      s.watch(t.pid, { children: true });
      const started: number[] = [];
      const snap = await waitFor(
        () => {
          const snap = s.sample();
          started.push(...snap.started.map((p) => p.pid));
          return snap.get(childPid) ? snap : undefined;
        },
        3_000,
        'the child row',
      );
      expect(started).toContain(childPid);
      expect(started).toContain(t.pid);
      expect(snap.get(childPid)).toMatchObject({ ppid: t.pid, comm: 'sampler_target' });
    });
  });

  it('does not follow children unless asked', async () => {
    const t = await target(['--fork-child']);
    await withSampler({ fields: ['ppid'] }, (s) => {
      s.watch(t.pid);
      s.sample();
      const snap = s.sample();
      expect(snap.length).toBe(1);
      expect(snap.get(t.value('child')!)).toBeUndefined();
    });
  });

  it('follows threads as rows of their own', async () => {
    const t = await target(['--threads', '4']);
    await withSampler({ fields: ['tgid', 'comm', 'threads'] }, (s) => {
      s.watch(t.pid, { threads: true });
      const snap = s.sample();
      const tids = taskIds(t.pid);
      expect(tids).toHaveLength(4);
      const rows = [...snap.records()].filter((r) => r.tgid === t.pid);
      expect(rows.map((r) => r.pid).sort((a, b) => a - b)).toEqual(tids);
      const threadRows = rows.filter((r) => r.pid !== t.pid);
      expect(threadRows).toHaveLength(3);
      expect(threadRows.map((r) => r.comm).sort()).toEqual(['parked-1', 'parked-2', 'parked-3']);
      expect(snap.get(t.pid)).toMatchObject({ tgid: t.pid, comm: 'sampler_target', threads: 4 });
    });
  });

  it('shares a sweep of hundreds of rows across threads, and squeezes out the rows that exited', async () => {
    // 200 + 100 thread rows: past the size a sweep is split at (128 rows).
    const staying = await target(['--threads', '200']);
    const leaving = await target(['--threads', '100', '--exit-after', '300']);
    await withSampler({ fields: ['tgid', 'comm', 'state'], sweepThreads: 2 }, async (s) => {
      // The leaving rows come first, so every staying row moves when they go.
      s.watch(leaving.pid, { threads: true });
      s.watch(staying.pid, { threads: true });
      const leavingTids = taskIds(leaving.pid);
      const stayingTids = taskIds(staying.pid);
      const rowsOf = (snap: ReturnType<Sampler['sample']>, pid: number) =>
        [...snap.records()].filter((r) => r.tgid === pid);
      const first = s.sample();
      expect(first.length).toBe(300);
      expect(first.started.map((p) => p.pid).sort((a, b) => a - b)).toEqual(
        [...leavingTids, ...stayingTids].sort((a, b) => a - b),
      );
      await waitFor(() => leaving.exited, 5_000, `pid ${leaving.pid} to exit`);
      const after = s.sample();
      expect(after.exited.map((p) => p.pid).sort((a, b) => a - b)).toEqual(leavingTids);
      expect(after.length).toBe(200);
      const rows = rowsOf(after, staying.pid);
      expect(rows.map((r) => r.pid).sort((a, b) => a - b)).toEqual(stayingTids);
      const names = ['sampler_target', ...Array.from({ length: 199 }, (_, k) => `parked-${k + 1}`)];
      expect(rows.map((r) => r.comm).sort()).toEqual(names.sort());
      expect(rows.every((r) => r.state === 'S')).toBe(true);
      // The same rows as a sweep on one thread sees.
      await withSampler({ fields: ['tgid', 'comm', 'state'], sweepThreads: 1 }, (one) => {
        one.watch(staying.pid, { threads: true });
        const byPid = (a: { pid: number }, b: { pid: number }) => a.pid - b.pid;
        expect(rows.sort(byPid)).toEqual(rowsOf(one.sample(), staying.pid).sort(byPid));
      });
    });
  });

  it('refuses a sweepThreads that is not an integer from 1 to 64', () => {
    for (const bad of [0, 65, 1.5, -1, Number.NaN])
      expect(() => new Sampler({ sweepThreads: bad })).toThrow(/sweepThreads.*1 to 64/);
  });

  it('with all: true finds a process started after the first sweep', async () => {
    await withSampler({ all: true, fields: ['comm', 'ppid'] }, async (s) => {
      const first = s.sample();
      expect(first.get(process.pid)).toMatchObject({ ppid: process.ppid });
      const t = await target();
      expect(first.get(t.pid)).toBeUndefined();
      const snap = s.sample();
      expect(snap.started.map((p) => p.pid)).toContain(t.pid);
      expect(snap.get(t.pid)).toEqual({ pid: t.pid, comm: 'sampler_target', ppid: process.pid });
    });
  });

  it('stops sampling an unwatched process', async () => {
    const a = await target();
    const b = await target();
    await withSampler({ fields: ['comm'] }, (s) => {
      s.watch(a.pid);
      s.watch(b.pid);
      expect(s.sample().length).toBe(2);
      s.unwatch(a.pid);
      const snap = s.sample();
      expect(snap.get(a.pid)).toBeUndefined();
      expect(snap.get(b.pid)).toBeDefined();
    });
  });

  it('unwatch() tells whether the pid was watched', async () => {
    const t = await target();
    await withSampler({ fields: ['comm'] }, (s) => {
      s.watch(t.pid);
      expect(s.unwatch(t.pid)).toBe(true);
      expect(s.unwatch(t.pid)).toBe(false);
    });
  });
});

describe('Sampler: errors', () => {
  it('throws ProcessGoneError with the pid when watching a pid that does not exist', async () => {
    const pid = await deadPid();
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    await withSampler({}, (s) => {
      let caught: unknown;
      try {
        s.watch(pid);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ProcessGoneError);
      const gone = caught as ProcessGoneError;
      expect(gone.pid).toBe(pid);
      expect(['ESRCH', 'ENOENT']).toContain(gone.code);
    });
  });

  it('names a bad field in its error', () => {
    const fields = ['rssBytes', 'rssBites'] as unknown as FieldName[];
    expect(() => new Sampler({ fields })).toThrow(/rssBites/);
  });

  it('throws on sample() after close()', async () => {
    const t = await target();
    const s = new Sampler({ fields: ['comm'] });
    s.watch(t.pid);
    s.sample();
    s.close();
    expect(() => s.sample()).toThrow(/closed/);
    expect(() => s.watch(t.pid)).toThrow(/closed/);
    await expect(async () => s.sampleAsync()).rejects.toThrow(/closed/);
  });

  it('releases every fd it opened on close()', async () => {
    const targets = await Promise.all([target(['--fds', '3']), target(['--threads', '2']), target()]);
    const before = fdCount(process.pid);
    const budget = fdBudget();
    const s = new Sampler({ fields: FIELD_NAMES });
    try {
      for (const t of targets) s.watch(t.pid, { threads: true });
      s.sample();
      expect(fdCount(process.pid)).toBeGreaterThan(before);
      // fdBudget() counts exactly the fds the sampler holds: 6 per process and 5 per extra thread row
      // (stat, statm, status, io, fd; processes also keep task/), 3 processes and 1 extra thread.
      expect(fdBudget().inUse - budget.inUse).toBe(fdCount(process.pid) - before);
      expect(fdBudget().inUse - budget.inUse).toBe(3 * 6 + 5);
    } finally {
      s.close();
    }
    expect(fdCount(process.pid)).toBe(before);
    expect(fdBudget()).toEqual(budget);
  });

  it('refuses to read a snapshot two samples old', async () => {
    const t = await target();
    await withSampler({ fields: ['comm'] }, (s) => {
      s.watch(t.pid);
      const first = s.sample();
      s.sample();
      expect(first.get(t.pid)?.comm).toBe('sampler_target'); // one newer sample: still valid
      s.sample();
      expect(() => first.get(t.pid)).toThrow(/stale/);
    });
  });
});

describe('Sampler: async sweeps, CPU and host', () => {
  it('gives the same values from sampleAsync() as from sample()', async () => {
    const t = await target(['--threads', '3', '--fds', '2', '--sockets', '2', '--comm', 'async) (x']);
    await asleep(t);
    const fields: FieldName[] = [
      'comm',
      'state',
      'ppid',
      'pgid',
      'threads',
      'fds',
      'sockets',
      'rssBytes',
      'vmBytes',
      'startTime',
      'uid',
    ];
    await withSampler({ fields }, async (s) => {
      s.watch(t.pid);
      const w0 = Date.now();
      const syncSnap = s.sample();
      const sync = syncSnap.get(t.pid);
      const t0 = performance.now();
      const asyncSnap = await s.sampleAsync();
      const asyncMs = performance.now() - t0;
      const asyncRec = asyncSnap.get(t.pid);
      // When and how long: the sweep's wall-clock time, and its native duration within the awaited time.
      expect(syncSnap.time).toBeGreaterThanOrEqual(w0);
      expect(asyncSnap.time).toBeGreaterThanOrEqual(syncSnap.time);
      expect(asyncSnap.durationMs).toBeGreaterThan(0);
      expect(asyncSnap.durationMs).toBeLessThanOrEqual(asyncMs);
      expect(sync).toMatchObject({
        comm: 'async) (x',
        threads: 3,
        sockets: t.value('socket-fds'),
        uid: process.getuid?.(),
      });
      expect(asyncRec).toEqual(sync);
    });
  });

  it('measures cpuPercent per interval: a spinning process > 50, an idle one < 5', async () => {
    const spinner = await target(['--spin']);
    const idle = await target();
    await asleep(idle);
    await withSampler({ fields: ['cpuPercent', 'userTicks'] }, async (s) => {
      s.watch(spinner.pid);
      s.watch(idle.pid);
      // The truth, read from /proc around each sweep: what the spinner really got in the same interval.
      const ticks0 = ticks(spinner.pid);
      const t0 = performance.now();
      const first = s.sample();
      expect(first.get(spinner.pid)?.cpuPercent).toBeNull();
      await sleep(300);
      const second = await s.sampleAsync();
      const t1 = performance.now();
      const ticks1 = ticks(spinner.pid);
      const truth = ((ticks1 - ticks0) * 10 * 100) / (t1 - t0); // 10 ms per tick
      const spin = second.get(spinner.pid)!;
      const rest = second.get(idle.pid)!;
      expect(spin.userTicks).toBeGreaterThan(first.get(spinner.pid)!.userTicks!);
      // Ticks are counted at 100 Hz: over ~300 ms that is a few percent of granularity either way.
      expect(Math.abs(spin.cpuPercent! - truth)).toBeLessThan(15);
      if (truth > 65) expect(spin.cpuPercent).toBeGreaterThan(50);
      else
        console.warn(
          `host too busy for the absolute check: the spinner got only ${truth.toFixed(0)}% of a core`,
        );
      expect(spin.cpuPercent).toBeLessThan(150); // one thread cannot use much more than one core
      expect(rest.cpuPercent).toBeGreaterThanOrEqual(0);
      expect(rest.cpuPercent).toBeLessThan(5);
    });
  });

  it('adds host figures that agree with /proc', async () => {
    await withSampler({ host: true, fields: ['comm'] }, async (s) => {
      const first = s.sample();
      expect(first.host).toBeDefined();
      expect(first.host!.cpuPercent).toBeNull();
      await sleep(100);
      const host = s.sample().host!;
      expect(host.cpuPercent).toBeGreaterThanOrEqual(0);
      expect(host.cpuPercent).toBeLessThanOrEqual(100);
      const cpuLines = readFileSync('/proc/stat', 'utf8')
        .split('\n')
        .filter((l) => /^cpu\d/.test(l)).length;
      expect(host.cpus).toBe(cpuLines);
      const meminfo = readFileSync('/proc/meminfo', 'utf8');
      const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(meminfo)![1]) * 1024;
      expect(host.memTotalBytes).toBe(kb('MemTotal'));
      expect(host.swapTotalBytes).toBe(kb('SwapTotal'));
      expect(Math.abs(host.memAvailableBytes! - kb('MemAvailable'))).toBeLessThan(256 << 20);
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ');
      expect(Math.abs(host.load15 - Number(load[2]))).toBeLessThanOrEqual(0.05);
      expect(host.runnable).toBeGreaterThanOrEqual(1);
      expect(host.processes).toBeGreaterThan(0);
    });
  });
});

describe('Sampler: watchAsync', () => {
  it('watches many pids off the event loop: identities in order, a typed error for a missing one', async () => {
    const a = await target();
    const b = await target();
    await withSampler({ fields: ['comm', 'startTime'] }, async (s) => {
      const missing = 4_194_303;
      const r = await s.watchAsync([a.pid, missing, b.pid]);
      expect(r[0]).toEqual({ pid: a.pid, startTime: s.sample().get(a.pid)?.startTime ?? -1 });
      expect(r[1]).toBeInstanceOf(ProcessGoneError);
      expect(r[1]).toMatchObject({ pid: missing });
      expect(r[2]).toMatchObject({ pid: b.pid });
      const snap = s.sample();
      expect(snap.get(b.pid)?.comm).toBe('sampler_target');
      expect(snap.get(missing)).toBeUndefined();
      await expect(s.watchAsync([0])).rejects.toThrow(/pid must be a positive integer/);
    });
  });
});

describe('Sampler: sampleUntil', () => {
  const workload = async (args: string[]) => track(await spawnTarget('workload', args));

  it('keeps sweeping until a condition holds, then returns every sweep in order', async () => {
    const t = await workload(['--delay', '400', '--alloc', '64']);
    await withSampler({ fields: ['rssBytes'], keep: 64 }, async (s) => {
      s.watch(t.pid);
      s.sample(); // the started report is news of its own
      const limit = 48 * 2 ** 20;
      const t0 = Date.now();
      const batch = await s.sampleUntil({
        intervalMs: 20,
        conditions: [{ pid: t.pid, field: 'rssBytes', above: true, value: limit }],
      });
      expect(batch.length).toBeGreaterThan(5);
      const rss = batch.map((snap) => snap.get(t.pid)!.rssBytes as number);
      expect(rss.at(-1)).toBeGreaterThanOrEqual(limit);
      expect(rss.slice(0, -1).every((v) => v < limit)).toBe(true);
      expect(batch.map((snap) => snap.generation)).toEqual(batch.map((_, i) => batch[0]!.generation + i));
      expect(batch[0]!.time).toBeGreaterThanOrEqual(t0 - 1);
    });
  });

  it('returns after waitMs without a condition, and keeps only the latest keep - 1 sweeps', async () => {
    const t = await target();
    await withSampler({ fields: ['comm'], keep: 4 }, async (s) => {
      s.watch(t.pid);
      s.sample();
      const t0 = Date.now();
      const batch = await s.sampleUntil({ intervalMs: 20, waitMs: 300 });
      expect(batch).toHaveLength(3);
      expect(batch.at(-1)!.time).toBeGreaterThanOrEqual(t0 + 250);
      expect(batch.every((snap) => snap.get(t.pid)?.comm === 'sampler_target')).toBe(true);
      // A new wait may rewrite any block: the old batch is stale from its start.
      const next = s.sampleUntil({ intervalMs: 20, waitMs: 0 });
      expect(() => batch[2]!.get(t.pid)).toThrow(/stale/);
      expect((await next)[0]!.get(t.pid)?.comm).toBe('sampler_target');
    });
  });

  it('returns when a watched process exits, with the exit reported', async () => {
    const t = await target(['--exit-after', '300']);
    await withSampler({ fields: ['comm'] }, async (s) => {
      const id = s.watch(t.pid);
      s.sample();
      const batch = await s.sampleUntil({ intervalMs: 20 });
      expect(batch.at(-1)!.exited).toEqual([id]);
    });
  });

  it('returns as soon as wake() is called, and a condition never met does not end it', async () => {
    const t = await target();
    await withSampler({ fields: ['threads'], keep: 32 }, async (s) => {
      s.watch(t.pid);
      s.sample();
      const t0 = performance.now();
      setTimeout(() => s.wake(), 250);
      const batch = await s.sampleUntil({
        intervalMs: 20,
        conditions: [{ pid: t.pid, field: 'threads', above: true, value: 1000 }],
      });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(240);
      expect(batch.length).toBeGreaterThan(3);
      expect(() => s.sampleUntil({ intervalMs: -1 })).toThrow(/intervalMs/);
      expect(() =>
        s.sampleUntil({
          intervalMs: 10,
          conditions: [{ pid: t.pid, field: 'nope' as 'comm', above: true, value: 0 }],
        }),
      ).toThrow(/nope/);
    });
  });
});
