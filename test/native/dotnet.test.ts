// The .NET runtime support against a real .NET 10 target: socket discovery, ProcessInfo2, runtime dumps of
// every type loaded in dotnet-dump analyze, the ptrace fallback, namespaces, another user, cancellation,
// and nothing injected into the target.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, detectRuntime } from '../../src/index.js';
import {
  DotnetUnavailableError,
  dotnetConnections,
  dotnetProcessInfo,
  writeDotnetDump,
  writeRuntimeAwareDump,
} from '../../src/runtimes/dotnet/index.js';
import { dotnetTool, TARGET_LINK } from '../fixtures/dotnet/build.js';
import { dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { procStat, spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';
import { hasTool, needsRoot, requirement } from '../helpers/requirements.js';

const ok = dotnetAvailable();
const track = trackProcesses();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-'));
});
afterAll(async () => {
  await dotnetConnections.closeAll();
  rmSync(dir, { recursive: true, force: true });
});

/** dotnet-dump analyze's answers to some SOS commands on a dump. */
function analyze(file: string, ...commands: string[]): string {
  const tool = dotnetTool('dotnet-dump')!;
  const r = spawnSync(tool, ['analyze', file, ...commands.flatMap((c) => ['-c', c]), '-c', 'exit'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return `${r.stdout}${r.stderr}`;
}

function soLibraries(pid: number): string[] {
  return [
    ...new Set(
      readFileSync(`/proc/${pid}/maps`, 'utf8')
        .split('\n')
        .map((l) => l.split(/\s+/)[5] ?? '')
        .filter((f) => f.includes('.so')),
    ),
  ].sort();
}

describe.runIf(ok)('.NET diagnostics socket and ProcessInfo2', () => {
  it("finds the socket by the target's start time and reads the runtime's facts", async () => {
    const t = track(await startDotnetTarget());
    const ticks = procStat(t.pid).fields[19];
    const info = await dotnetProcessInfo(t.pid);
    expect(info.socket).toBe(`/tmp/dotnet-diagnostic-${t.pid}-${ticks}-socket`);
    expect(statSync(info.socket).isSocket()).toBe(true);
    expect(info.processId).toBe(t.pid);
    expect(info.managedEntrypointAssemblyName).toBe('tripdump-fixture');
    expect(info.os).toBe('Linux');
    const runtimes = spawnSync('dotnet', ['--list-runtimes'], { encoding: 'utf8' }).stdout;
    expect(runtimes).toContain(`Microsoft.NETCore.App ${info.clrProductVersion} `);
    expect(await detectRuntime(t.pid)).toEqual({
      kind: 'dotnet',
      socket: info.socket,
      version: info.clrProductVersion,
    });
  });

  it('says a process is not .NET, and that diagnostics are disabled when they are', async () => {
    const plain = track(await spawnTarget('sampler_target'));
    expect(await detectRuntime(plain.pid)).toEqual({ kind: 'native' });
    const e = await dotnetProcessInfo(plain.pid).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DotnetUnavailableError);
    expect((e as DotnetUnavailableError).reason).toBe('not-dotnet');

    const off = track(await startDotnetTarget({ env: { ...process.env, DOTNET_EnableDiagnostics: '0' } }));
    const d = await dotnetProcessInfo(off.pid).catch((x: unknown) => x);
    expect(d).toBeInstanceOf(DotnetUnavailableError);
    expect((d as DotnetUnavailableError).reason).toBe('disabled');
    expect((d as Error).message).toContain('DOTNET_EnableDiagnostics=0');
  });
});

describe.runIf(ok)('.NET runtime dumps', () => {
  const analyzable = requirement(
    dotnetTool('dotnet-dump') !== undefined,
    'dotnet-dump is not installed (dotnet tool install --tool-path .cache/dotnet-tools dotnet-dump)',
  );

  it.each(['normal', 'withheap', 'triage', 'full'] as const)(
    'writes a %s dump that dotnet-dump analyze loads',
    async (type) => {
      const t = track(await startDotnetTarget());
      await t.send('alloc 20', 'allocated');
      const file = path.join(dir, `app.${type}.dmp`);
      const r = await writeDotnetDump(t.pid, file, { type });
      expect(r).toMatchObject({ path: file, type });
      const st = statSync(file);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.size).toBe(r.bytesWritten);
      expect(readFileSync(file).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      // No staging folder is left next to the dump.
      expect(readdirSync(dir).filter((f) => f.startsWith('.tripdump'))).toEqual([]);
      if (!analyzable) return;
      const out = analyze(file, 'clrstack -all', 'dumpheap -type TripdumpFixtureMarker');
      // The parked worker thread's managed frame, in every type.
      expect(out).toContain('Fixture.Worker.Park()');
      // The marker object: withheap and full carry the GC heap; normal and triage keep stacks and modules only.
      if (type === 'withheap' || type === 'full')
        expect(out).toMatch(/1\s+\d+\s+Fixture\.TripdumpFixtureMarker/);
      else expect(out).not.toMatch(/1\s+\d+\s+Fixture\.TripdumpFixtureMarker/);
    },
  );

  it('puts the managed heap in withheap and full dumps, not in normal ones', async () => {
    const t = track(await startDotnetTarget());
    await t.send('alloc 64', 'allocated');
    const size = async (type: 'normal' | 'withheap' | 'full') =>
      (await writeDotnetDump(t.pid, path.join(dir, `sizes.${type}`), { type })).bytesWritten;
    const normal = await size('normal');
    const withheap = await size('withheap');
    const full = await size('full');
    // 64 MiB of managed arrays are in withheap and full, not in normal.
    expect(withheap - normal).toBeGreaterThan(60 * 2 ** 20);
    expect(full).toBeGreaterThanOrEqual(withheap);
  });

  it('refuses an existing file unless overwrite, and leaves it as it was', async () => {
    const t = track(await startDotnetTarget());
    const file = path.join(dir, 'exists.dmp');
    await writeDotnetDump(t.pid, file, { type: 'triage' });
    const before = statSync(file).mtimeMs;
    await expect(writeDotnetDump(t.pid, file, { type: 'triage' })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(statSync(file).mtimeMs).toBe(before);
    await writeDotnetDump(t.pid, file, { type: 'triage', overwrite: true });
  });

  it('stops waiting at once when aborted and leaves no file', async () => {
    const t = track(await startDotnetTarget());
    await t.send('alloc 200', 'allocated');
    const file = path.join(dir, 'aborted.dmp');
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const t0 = performance.now();
    await expect(writeDotnetDump(t.pid, file, { type: 'full', signal: ctl.signal })).rejects.toBeInstanceOf(
      AbortError,
    );
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(existsSync(file)).toBe(false);
    // The runtime's own file was unlinked with its staging folder; the target keeps running.
    expect(readdirSync(dir).filter((f) => f.startsWith('.tripdump') || f.startsWith('aborted'))).toEqual([]);
    await t.send('gc 0', 'collected');
  });

  it('falls back to the ptrace writer when diagnostics are disabled, and says why', async () => {
    const t = track(await startDotnetTarget({ env: { ...process.env, DOTNET_EnableDiagnostics: '0' } }));
    const file = path.join(dir, 'fallback.core');
    const r = await writeRuntimeAwareDump(t.pid, file, { dotnetType: 'full' });
    expect(r.writer).toBe('ptrace');
    expect(r.fallback).toContain('DOTNET_EnableDiagnostics=0');
    expect(r.warnings).toContain(r.fallback);
    expect(statSync(file).size).toBeGreaterThan(0);
    // A non-.NET process gets the ptrace writer with nothing to explain.
    const plain = track(await spawnTarget('sampler_target'));
    const p = await writeRuntimeAwareDump(plain.pid, path.join(dir, 'plain.core'));
    expect(p.writer).toBe('ptrace');
    expect(p.fallback).toBeUndefined();
  });

  it('reaches a target running as another user', async () => {
    if (!needsRoot('running the target as another user') || !hasTool('setpriv', 'util-linux')) return;
    // The target's files must be readable by that user: a copy of the built target in a 0755 folder.
    const copy = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-nobody-'));
    try {
      cpSync(path.dirname(realpathSync(TARGET_LINK)), copy, { recursive: true });
      chmodSync(copy, 0o755);
      const t = track(
        await startDotnetTarget({
          wrapper: [
            'setpriv',
            '--reuid=65534',
            '--regid=65534',
            '--clear-groups',
            '--',
            path.join(copy, 'tripdump-fixture'),
          ],
          env: { ...process.env, HOME: '/nonexistent', DOTNET_CLI_HOME: '/tmp' },
        }),
      );
      const pid = await waitFor(
        () =>
          childOf(t.pid, 'tripdump-fixtu') ??
          (procStat(t.pid).comm.startsWith('tripdump-fixtu') ? t.pid : undefined),
        10_000,
        'the target',
      );
      expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65534/m);
      expect((await dotnetProcessInfo(pid)).managedEntrypointAssemblyName).toBe('tripdump-fixture');
      const file = path.join(dir, 'nobody.dmp');
      const r = await writeDotnetDump(pid, file, { type: 'triage' });
      const st = statSync(r.path);
      expect(st.uid).toBe(0);
      expect(st.mode & 0o777).toBe(0o600);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('reaches a target in its own mount and pid namespaces', async () => {
    if (!needsRoot('unshare --mount --pid') || !hasTool('unshare', 'util-linux')) return;
    // The target gets a temporary folder of its own (a tmpfs mounted in its namespace only, named by its
    // TMPDIR): its socket is only reachable through /proc/PID/root. Not /tmp itself: the checkout (and the
    // fixture) may live below /tmp.
    const ownTmp = path.join(dir, 'ns-tmp');
    mkdirSync(ownTmp);
    const t = track(
      await startDotnetTarget({
        wrapper: [
          'unshare',
          '--mount',
          '--pid',
          '--fork',
          '--kill-child',
          '--mount-proc',
          'sh',
          '-c',
          'mount -t tmpfs tmpfs "$TMPDIR" && exec "$0"',
        ],
        env: { ...process.env, TMPDIR: ownTmp },
      }),
    );
    const pid = await waitFor(() => descendant(t.pid, 'tripdump-fixtu'), 10_000, 'the namespaced target');
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
    const info = await dotnetProcessInfo(pid);
    expect(info.processId).toBe(1);
    expect(info.socket).toBe(
      `/proc/${pid}/root${ownTmp}/dotnet-diagnostic-1-${procStat(pid).fields[19]}-socket`,
    );
    // Not visible outside the target's namespace.
    expect(readdirSync(ownTmp)).toEqual([]);
    const file = path.join(dir, 'namespaced.dmp');
    await writeDotnetDump(pid, file, { type: 'triage' });
    expect(statSync(file).size).toBeGreaterThan(0);
  });
});

describe.runIf(ok)('nothing is injected', () => {
  it('leaves the target with the same libraries after sessions and a dump', async () => {
    const t = track(await startDotnetTarget());
    await t.send('gc 0', 'collected');
    const before = soLibraries(t.pid);
    const { dotnetCounters } = await import('../../src/runtimes/dotnet/index.js');
    const ctl = new AbortController();
    let n = 0;
    for await (const c of dotnetCounters(t.pid, {
      providers: ['System.Runtime', 'Tripdump.Fixture'],
      signal: ctl.signal,
    })) {
      if (c.kind !== 'notice' && ++n >= 10) ctl.abort();
    }
    await writeDotnetDump(t.pid, path.join(dir, 'injected.dmp'), { type: 'triage' });
    await t.send('throw OrderFailedException after', 'thrown');
    expect(soLibraries(t.pid)).toEqual(before);
    expect(before.some((l) => /profiler|procdump/i.test(l))).toBe(false);
  });
});

/** A child of `pid` whose comm starts with `comm`. */
function childOf(pid: number, comm: string): number | undefined {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let kids: string;
    try {
      kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.trim().split(/\s+/).filter(Boolean).map(Number))
      if (procStat(k).comm.startsWith(comm)) return k;
  }
  return undefined;
}

/** A descendant of `pid` (any depth) whose comm starts with `comm`. */
function descendant(pid: number, comm: string): number | undefined {
  const todo = [pid];
  while (todo.length) {
    const p = todo.shift()!;
    for (const tid of existsSync(`/proc/${p}/task`) ? readdirSync(`/proc/${p}/task`) : []) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch {}
      for (const k of kids.trim().split(/\s+/).filter(Boolean).map(Number)) {
        if (procStat(k).comm.startsWith(comm)) return k;
        todo.push(k);
      }
    }
  }
  return undefined;
}
