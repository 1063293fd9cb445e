// writeCoreDump through the public API and `tripdump dump` through the CLI, against a real multi-threaded
// target: the cores load in gdb (and eu-stack where installed), the target is left running and untraced
// whatever happens, and every failure is a typed error with no file left behind.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortError,
  AlreadyTracedError,
  ProcessGoneError,
  SystemError,
  UsageError,
  writeCoreDump,
} from '../../src/index.js';
import {
  fixture,
  procStatus,
  spawnTarget,
  type Target,
  trackProcesses,
  waitFor,
} from '../helpers/processes.js';
import { hasTool, requirement } from '../helpers/requirements.js';

const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
const track = trackProcesses();
const hasEuStack = hasTool('eu-stack', 'elfutils');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dump-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const running = (pid: number) => {
  const s = procStatus(pid);
  return !/^[tT]/.test(s.State ?? '') && s.TracerPid === '0';
};

/** The main thread answers a byte on stdin with "pong": proof that it runs and its read() restarted. */
async function pong(t: Target): Promise<void> {
  const before = t.lines.length;
  t.child.stdin!.write('x');
  await waitFor(() => t.lines.slice(before).some((l) => l.startsWith('pong x')), 5000, 'pong');
  expect(t.lines.filter((l) => l.startsWith('error'))).toEqual([]);
}

function gdb(core: string, ...commands: string[]): string {
  const args = ['-batch', ...commands.flatMap((c) => ['-ex', c]), fixture('dump_target'), core];
  const r = spawnSync('gdb', args, { encoding: 'utf8' });
  return r.stdout + r.stderr;
}

describe.each(['stop', 'snapshot'] as const)('writeCoreDump, %s mode', (mode) => {
  it('writes a core gdb loads with every thread, its function, and the marker', async () => {
    const t = track(await spawnTarget('dump_target', [], { stdin: true }));
    const file = path.join(dir, `api.${mode}`);
    let progress: [number, number] | undefined;
    const r = await writeCoreDump(t.pid, file, {
      mode,
      onProgress: (done, total) => {
        progress = [done, total];
      },
    });
    expect(r).toMatchObject({ path: file, mode, threads: 4, warnings: [] });
    expect(r.bytesWritten).toBe(statSync(file).size);
    expect(r.bytesOnDisk).toBeLessThanOrEqual(r.bytesWritten);
    expect(r.mappingsWritten).toBeGreaterThan(5);
    expect(r.pauseMs).toBeGreaterThan(0);
    expect(progress?.[0]).toBe(progress?.[1]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);

    const out = gdb(file, 'thread apply all bt', 'p/x marker');
    expect((out.match(/^Thread \d+ /gm) ?? []).length).toBe(4);
    for (const fn of ['parked_alpha', 'parked_beta', 'parked_gamma', 'main']) expect(out).toContain(fn);
    expect(out).toContain('= 0x7d0c0ffee');
    if (hasEuStack) {
      const eu = spawnSync('eu-stack', ['--core', file, '-e', fixture('dump_target')], { encoding: 'utf8' });
      expect((eu.stdout.match(/^TID \d+:/gm) ?? []).length).toBe(4);
      expect(eu.stdout).toContain('parked_beta');
    }
    expect(running(t.pid)).toBe(true);
    await pong(t);
  });
});

/** Children of every thread of `pid` (a snapshot child is the child of the thread that cloned it). */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
    } catch {
      return []; // a thread that exited meanwhile
    }
  });
}

describe('cancelling and dying mid-dump', () => {
  // How fast a cancel settles is measured by `npm run bench:dump` (its distribution over many runs);
  // here, what it leaves behind.
  it.each(['stop', 'snapshot'] as const)(
    'an aborted %s-mode dump rejects, leaves no file, the target running, and no child or dumper behind',
    async (mode) => {
      const t = track(
        await spawnTarget('dump_target', ['--touch', '768'], { stdin: true, timeoutMs: 30_000 }),
      );
      const ours = childrenOf(process.pid); // the target, and whatever else this worker runs
      const ac = new AbortController();
      const file = path.join(dir, `aborted.${mode}`);
      const p = writeCoreDump(t.pid, file, {
        mode,
        signal: ac.signal,
        onProgress: (done) => {
          if (done > 64 << 20) ac.abort();
        },
      });
      await expect(p).rejects.toBeInstanceOf(AbortError);
      expect(readdirSync(dir).filter((f) => f.startsWith('aborted') || f.includes('.tmp'))).toEqual([]);
      expect(running(t.pid)).toBe(true);
      // The snapshot child is killed before the promise settles and reaped from the target just after;
      // the dumper process that did it is reaped by the addon.
      await waitFor(() => childrenOf(t.pid).length === 0, 5000, 'the snapshot child to be reaped');
      await waitFor(
        () => childrenOf(process.pid).every((c) => ours.includes(c)),
        5000,
        'the dumper to be reaped',
      );
      expect(procStatus(t.pid).TracerPid).toBe('0');
      await pong(t);
    },
  );

  it('Ctrl-C to `tripdump dump` in snapshot mode: it exits 0, and the child is reaped from the target after it has gone', async () => {
    const t = track(await spawnTarget('dump_target', ['--touch', '768'], { stdin: true, timeoutMs: 30_000 }));
    const file = path.join(dir, 'interrupted');
    const dumper: ChildProcess = track(
      spawn(process.execPath, [cli, 'dump', String(t.pid), file, '--mode', 'snapshot'], { stdio: 'ignore' }),
    );
    // The snapshot child exists: the dump is past the pause and writing.
    await waitFor(() => childrenOf(t.pid).length > 0, 10_000, 'the snapshot child');
    const exited = new Promise<number | null>((r) => dumper.once('exit', (code) => r(code)));
    process.kill(dumper.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    // tripdump is gone; the dumper it left finishes the clean-up on its own.
    await waitFor(() => childrenOf(t.pid).length === 0, 5000, 'the snapshot child to be reaped');
    expect(readdirSync(dir).filter((f) => f.startsWith('interrupted') || f.includes('.tmp'))).toEqual([]);
    expect(running(t.pid)).toBe(true);
    await pong(t);
  });

  it('a tripdump process killed with SIGKILL mid-dump leaves the target running and untraced, no child and no file', async () => {
    const t = track(await spawnTarget('dump_target', ['--touch', '768'], { stdin: true, timeoutMs: 30_000 }));
    for (const mode of ['stop', 'snapshot']) {
      const dumper: ChildProcess = track(
        spawn(
          process.execPath,
          [cli, 'dump', String(t.pid), path.join(dir, `killed.${mode}`), '--mode', mode],
          {
            stdio: 'ignore',
          },
        ),
      );
      // Wait until it is tracing the target, or the snapshot child for the rest of the dump (the tracer is
      // the dump thread of its dumper process), then kill it.
      const tracer = await waitFor(
        () =>
          [t.pid, ...childrenOf(t.pid)]
            .map((p) => {
              try {
                return Number(procStatus(p).TracerPid);
              } catch {
                return 0;
              }
            })
            .find((p) => p > 0),
        10_000,
        'the dump to attach',
        1,
      );
      const worker = Number(procStatus(tracer).Tgid);
      process.kill(dumper.pid!, 'SIGKILL');
      await new Promise((r) => dumper.once('exit', r));
      // Its dumper hears of it (its death signal) and cancels: it lets the target go, kills the snapshot
      // child and reaps it from the target, then ends.
      await waitFor(
        () => {
          try {
            return /^Z/.test(procStatus(worker).State ?? '');
          } catch {
            return true; // gone
          }
        },
        20_000,
        `dumper ${worker} to end`,
      );
      expect(running(t.pid)).toBe(true);
      // The file is an unnamed O_TMPFILE until complete: a killed writer leaves no entry at all.
      expect(readdirSync(dir).filter((f) => f.includes('killed'))).toEqual([]);
      // No snapshot child is left, running or as a zombie the target would have to reap.
      expect(childrenOf(t.pid)).toEqual([]);
      await pong(t);
    }
  });
});

describe('a target in a particular state', () => {
  it('a job-control stopped target is still stopped after the dump, and a pending signal survives', async () => {
    const t = track(await spawnTarget('dump_target', ['--block-usr2'], { stdin: true }));
    process.kill(t.pid, 'SIGUSR2'); // blocked: stays pending
    process.kill(t.pid, 'SIGSTOP');
    await waitFor(() => procStatus(t.pid).State?.startsWith('T'), 2000, 'the stop');
    const r = await writeCoreDump(t.pid, path.join(dir, 'stopped'));
    expect(r.threads).toBe(4);
    // Every thread is back in the group stop when the dump returns, not merely on its way there.
    for (const tid of readdirSync(`/proc/${t.pid}/task`))
      expect(readFileSync(`/proc/${t.pid}/task/${tid}/status`, 'utf8')).toMatch(/^State:\s+T \(stopped\)/m);
    expect(procStatus(t.pid).TracerPid).toBe('0');
    expect(BigInt(`0x${procStatus(t.pid).ShdPnd}`) & (1n << 11n)).toBe(1n << 11n); // SIGUSR2 = 12
    process.kill(t.pid, 'SIGCONT');
    await waitFor(() => running(t.pid), 2000, 'SIGCONT');
    await pong(t);
  });

  it('a target already traced by a debugger gives AlreadyTracedError naming the tracer', async () => {
    const t = track(await spawnTarget('dump_target', [], { stdin: true }));
    const gdbProc = track(
      spawn('gdb', ['-q', '-nx', '-p', String(t.pid)], { stdio: ['pipe', 'ignore', 'ignore'] }),
    );
    await waitFor(() => procStatus(t.pid).TracerPid === String(gdbProc.pid), 20_000, 'gdb to attach');
    const e = await writeCoreDump(t.pid, path.join(dir, 'traced')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AlreadyTracedError);
    expect((e as AlreadyTracedError).tracerPid).toBe(gdbProc.pid);
    expect(readdirSync(dir).filter((f) => f.startsWith('traced'))).toEqual([]);
  });
});

describe('memory shared with a fork', () => {
  it('a stop-mode dump reads copy-on-write shared pages without copying them in the target', async () => {
    // process_vm_readv pins pages, and pinning a shared anonymous page unshares it: the target would get
    // a private copy of every page it shares with its fork child (a prefork server's whole image).
    const t = track(await spawnTarget('dump_target', ['--touch', '64', '--fork-child'], { stdin: true }));
    const child = Number(t.lines.find((l) => l.startsWith('child '))!.split(' ')[1]);
    try {
      const sharedKiB = () => {
        const m = /^Shared_Dirty:\s+(\d+) kB/m.exec(readFileSync(`/proc/${t.pid}/smaps_rollup`, 'utf8'));
        return Number(m![1]);
      };
      const before = sharedKiB();
      expect(before).toBeGreaterThanOrEqual(64 * 1024);
      const r = await writeCoreDump(t.pid, path.join(dir, 'cow'), { mode: 'stop' });
      expect(r.bytesWritten).toBeGreaterThan(64 * 2 ** 20);
      // Allow for the few pages the target itself writes while it runs (stacks, stdio).
      expect(sharedKiB()).toBeGreaterThan(before - 1024);
      const big = t.lines.find((l) => l.startsWith('big '))!.split(' ')[1]!;
      const out = gdb(path.join(dir, 'cow'), `x/1bx ${big}+4096*7`);
      expect(out).toMatch(/:\s+0x08/);
      await pong(t);
    } finally {
      process.kill(child, 'SIGKILL');
    }
  });
});

// Page cache can only be dropped where it is backed by a disk (not tmpfs) and measured with fincore.
const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const canSeeCache =
  hasTool('fincore', 'util-linux') &&
  requirement(
    fsType !== 'tmpfs',
    `write-behind test: ${tmpdir()} is on tmpfs, which has no page cache to drop`,
  );

describe.skipIf(!canSeeCache)('write-behind', () => {
  it('a dump keeps no more than its 64 MiB window of the core in the page cache', async () => {
    const t = track(await spawnTarget('dump_target', ['--touch', '256'], { stdin: true }));
    const file = path.join(dir, 'behind');
    const r = await writeCoreDump(t.pid, file, { mode: 'stop' });
    expect(r.bytesOnDisk).toBeGreaterThan(256 * 2 ** 20);
    const cached = Number(
      spawnSync('fincore', ['--bytes', '--noheadings', '--raw', '-o', 'RES', file], { encoding: 'utf8' })
        .stdout,
    );
    // The window, the chunk being written, and the headers and notes at the front.
    expect(cached).toBeLessThanOrEqual(80 * 2 ** 20);
    await pong(t);
  });
});

describe('failures', () => {
  it('each failure is a typed error and leaves no file', async () => {
    const t = track(await spawnTarget('dump_target', [], { stdin: true }));
    await expect(writeCoreDump(4_194_303, path.join(dir, 'gone'))).rejects.toBeInstanceOf(ProcessGoneError);
    const missing = await writeCoreDump(t.pid, path.join(dir, 'no', 'such', 'dir', 'core')).catch(
      (x: unknown) => x,
    );
    expect(missing).toBeInstanceOf(SystemError);
    expect(missing).toMatchObject({ code: 'ENOENT', pid: t.pid });
    const file = path.join(dir, 'exists');
    await writeCoreDump(t.pid, file);
    await expect(writeCoreDump(t.pid, file)).rejects.toMatchObject({ code: 'EEXIST' });
    await writeCoreDump(t.pid, file, { overwrite: true });
    await expect(writeCoreDump(t.pid, file, { mode: 'fast' as 'stop' })).rejects.toBeInstanceOf(UsageError);
    await expect(writeCoreDump(-1, file)).rejects.toBeInstanceOf(UsageError);
    expect(
      readdirSync(dir).filter((f) => f.includes('.tmp') || f.startsWith('gone') || f.startsWith('.')),
    ).toEqual([]);
    expect(running(t.pid)).toBe(true);
    await pong(t);
  });
});

describe('tripdump dump', () => {
  it('writes <name>_manual_<yymmdd_HHMMSS>.<pid> in the given folder and says what it wrote', async () => {
    const t = track(await spawnTarget('dump_target', [], { stdin: true }));
    const out = mkdtempSync(path.join(dir, 'cli-'));
    const r = spawnSync(process.execPath, [cli, 'dump', String(t.pid), out, '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(path.basename(result.path)).toMatch(new RegExp(`^dump_target_manual_\\d{6}_\\d{6}\\.${t.pid}$`));
    expect(readdirSync(out)).toEqual([path.basename(result.path)]);
    expect(gdb(result.path, 'p/x marker')).toContain('= 0x7d0c0ffee');
    await pong(t);
  });

  it.each([
    [['dump'], /which process\? give a PID/],
    [['dump', 'abc'], /'abc' is not a pid/],
    [['dump', '4194303'], /process 4194303 does not exist/],
    [['dump', '1', '--mode', 'fast'], /--mode must be 'stop' or 'snapshot', got 'fast'/],
    [['dump', '1', '--filter', 'zz'], /--filter needs a hex coredump_filter mask/],
    [['dump', '1', '/no/such/dir/core'], /folder '\/no\/such\/dir' does not exist/],
  ])('%j: exit 2 with a message naming the problem', (args, message) => {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
