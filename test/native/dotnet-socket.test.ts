// A .NET diagnostics socket is trusted only when it is the target's own (issue 19, defect 4): a socket
// another process listens on at the target's well-known path — planted by another user in /tmp or in the
// target's TMPDIR, or by a process of the target's own user — is refused before a byte reaches it, by
// every path that finds one (ProcessInfo, counters, .NET triggers, dumps, runtime detection), with an error
// naming the socket, who holds it and the target; the squatter (test/fixtures/socket_squatter.c) counts
// what reached it. The target's own socket still works.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { detectRuntime } from '../../src/runtimes/detect.js';
import { dotnetProcessInfo } from '../../src/runtimes/dotnet/api.js';
import { DotnetUntrustedSocketError } from '../../src/runtimes/dotnet/errors.js';
import { start } from '../e2e/run-cli.js';
import { dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { spawnTarget, type Target, trackProcesses, waitFor } from '../helpers/processes.js';
import { hasTool, needsRoot, nobodyCanRun } from '../helpers/requirements.js';

const track = trackProcesses();
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const ROOT = path.resolve(import.meta.dirname, '../..');
/**
 * Runs the target with a /tmp of its own, as a container has. The checkout (the fixtures, the .NET build)
 * may itself live below /tmp (CI clones there): it is bound back at its own path inside the new /tmp.
 */
const OWN_TMP = [
  'unshare',
  '--mount',
  '--propagation',
  'private',
  '/bin/sh',
  '-c',
  `root='${ROOT.replaceAll("'", `'\\''`)}'
mount --bind /tmp /mnt && mount -t tmpfs -o mode=1777 tripdump-test /tmp || exit 1
case "$root" in /tmp/*) mkdir -p "$root" && mount --bind "/mnt\${root#/tmp}" "$root" || exit 1 ;; esac
umount -l /mnt && exec "$0" "$@"`,
];
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-socket-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The path the .NET runtime of `pid` would listen on, in `tmp` (its TMPDIR). */
function socketPath(pid: number, tmp = '/tmp'): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const startTicks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return path.join(tmp, `dotnet-diagnostic-${pid}-${startTicks}-socket`);
}

interface Squatter extends Target {
  /** What reached it so far: bytes read and connections accepted. */
  report(): Promise<{ bytes: number; accepted: number }>;
}

async function squat(at: string, wrapper?: readonly string[]): Promise<Squatter> {
  onTestFinished(() => rmSync(at, { force: true }));
  const t = track(
    await spawnTarget('socket_squatter', [at], { stdin: true, ...(wrapper ? { wrapper } : {}) }),
  );
  return Object.assign(t, {
    async report() {
      const from = t.lines.length;
      t.child.stdin!.write('report\n');
      const line = await waitFor(
        () => t.lines.slice(from).find((l) => l.startsWith('total ')),
        10_000,
        "the squatter's report",
      );
      const [, bytes, , accepted] = line.split(' ');
      return { bytes: Number(bytes), accepted: Number(accepted) };
    },
  });
}

async function run(args: string[], env?: NodeJS.ProcessEnv) {
  const r = start(args, { cwd: dir, ...(env ? { env } : {}) });
  track(r.child);
  const code = await r.exit;
  return { code, out: r.out(), err: r.err() };
}

const rootAndNobody = () => nobodyCanRun('a squatter running as nobody');

describe('a diagnostics socket that is not the target own', () => {
  it.runIf(rootAndNobody())(
    "another user's socket at a root process's path is refused without connecting: triggers, counters, library, detection; a dump falls back",
    async () => {
      const target = track(await spawnTarget('sampler_target'));
      const at = socketPath(target.pid);
      const squatter = await squat(at, AS_NOBODY);
      expect(statSync(at).uid).toBe(65534);
      const named = [at, 'uid 65534 (nobody)', `process ${target.pid}`, 'uid 0 (root)'];

      const exceptions = await run(['-e', '-n', '1', String(target.pid), dir]);
      expect(exceptions.code).toBe(1);
      for (const s of named) expect(exceptions.err).toContain(s);
      expect(exceptions.err).not.toMatch(/no answer|timed out/i);

      const counters = await run(['counters', String(target.pid), '--count', '1']);
      expect(counters.code).toBe(1);
      for (const s of named) expect(counters.err).toContain(s);

      await expect(dotnetProcessInfo(target.pid)).rejects.toBeInstanceOf(DotnetUntrustedSocketError);
      // Not .NET: the planted socket does not make it one.
      expect(await detectRuntime(target.pid)).toEqual({ kind: 'native' });

      // A dump of the process still works (the ptrace writer), and says why the runtime was not asked.
      const dump = await run(['dump', String(target.pid), path.join(dir, 'core')]);
      expect(dump.code).toBe(0);
      expect(statSync(path.join(dir, 'core')).size).toBeGreaterThan(0);

      expect(await squatter.report()).toEqual({ bytes: 0, accepted: 0 });
    },
  );

  it.runIf(rootAndNobody() && dotnetAvailable())(
    "another user's socket for a root .NET process with diagnostics off is refused; its dump falls back and names the socket",
    async () => {
      const t = track(await startDotnetTarget({ env: { ...process.env, DOTNET_EnableDiagnostics: '0' } }));
      const at = socketPath(t.pid);
      const squatter = await squat(at, AS_NOBODY);

      const exceptions = await run(['-e', '-n', '1', String(t.pid), dir]);
      expect(exceptions.code).toBe(1);
      expect(exceptions.err).toContain(at);
      expect(exceptions.err).toContain('uid 65534 (nobody)');
      expect(exceptions.out).not.toContain('Press Ctrl-C');

      const dump = await run(['dump', String(t.pid), path.join(dir, 'off.core')]);
      expect(dump.code).toBe(0);
      expect(dump.out).toContain('written by the ptrace writer instead');
      expect(dump.out).toContain(at);
      expect(dump.out).toContain('uid 65534 (nobody)');

      const detected = await detectRuntime(t.pid);
      expect(detected).toMatchObject({ kind: 'dotnet', unavailable: expect.stringContaining(at) });

      expect(await squatter.report()).toEqual({ bytes: 0, accepted: 0 });
    },
  );

  it.runIf(rootAndNobody())("another user's socket in the target's TMPDIR is refused", async () => {
    // A TMPDIR anyone may write, as /tmp is.
    const shared = mkdtempSync(path.join(dir, 'tmp-'));
    chmodSync(dir, 0o755);
    chmodSync(shared, 0o1777);
    const target = track(
      await spawnTarget('sampler_target', [], { env: { ...process.env, TMPDIR: shared } }),
    );
    const at = socketPath(target.pid, shared);
    const squatter = await squat(at, AS_NOBODY);
    const counters = await run(['counters', String(target.pid), '--count', '1']);
    expect(counters.code).toBe(1);
    expect(counters.err).toContain(at);
    expect(counters.err).toContain('uid 65534 (nobody)');
    expect(await squatter.report()).toEqual({ bytes: 0, accepted: 0 });
  });

  it.runIf(rootAndNobody() && hasTool('unshare', 'util-linux') && hasTool('nsenter', 'util-linux'))(
    "another user's socket in the /tmp of a target in its own mount namespace (a container) is refused",
    async () => {
      // The target gets a /tmp of its own; the squatter plants the socket there, from inside.
      const target = track(
        await spawnTarget('sampler_target', [], {
          wrapper: OWN_TMP,
        }),
      );
      const inside = socketPath(target.pid);
      const at = `/proc/${target.pid}/root${inside}`;
      const squatter = track(
        await spawnTarget('socket_squatter', [inside], {
          stdin: true,
          wrapper: ['nsenter', `--target=${target.pid}`, '--mount', ...AS_NOBODY],
        }),
      );
      expect(statSync(at).uid).toBe(65534);
      const counters = await run(['counters', String(target.pid), '--count', '1']);
      expect(counters.code).toBe(1);
      expect(counters.err).toContain(at);
      expect(counters.err).toContain('uid 65534 (nobody)');
      squatter.child.stdin!.write('report\n');
      const line = await waitFor(() => squatter.lines.find((l) => l.startsWith('total ')), 10_000, 'report');
      expect(line).toBe('total 0 accepted 0');
    },
  );

  it('a listener of the target own user that is not the target is refused after connecting, before a byte is sent (SO_PEERCRED)', async () => {
    // Same owner as the target, so the file check passes: only the listener's pid tells them apart.
    const shared = mkdtempSync(path.join(dir, 'tmp-'));
    const target = track(
      await spawnTarget('sampler_target', [], { env: { ...process.env, TMPDIR: shared } }),
    );
    const at = socketPath(target.pid, shared);
    const squatter = await squat(at);

    const e = await dotnetProcessInfo(target.pid).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DotnetUntrustedSocketError);
    expect((e as DotnetUntrustedSocketError).holder).toMatchObject({ pid: squatter.pid });
    expect((e as Error).message).toContain(`process ${squatter.pid}`);
    expect((e as Error).message).toContain(at);

    const counters = await run(['counters', String(target.pid), '--count', '1']);
    expect(counters.code).toBe(1);
    expect(counters.err).toContain(`held by process ${squatter.pid}`);
    expect(counters.err).toContain(`not by the target (process ${target.pid}`);

    const report = await squatter.report();
    expect(report.bytes).toBe(0);
    expect(report.accepted).toBeGreaterThanOrEqual(2);
  });

  it.runIf(dotnetAvailable())('the target own socket still works (ProcessInfo, counters)', async () => {
    const t = track(await startDotnetTarget());
    const info = await dotnetProcessInfo(t.pid);
    expect(info.processId).toBe(t.pid);
    expect(info.socket).toBe(socketPath(t.pid));
    const counters = await run(['counters', String(t.pid), '--count', '1']);
    expect(counters.code).toBe(0);
    expect(counters.out).toMatch(/System\.Runtime:cpu-usage/);
  });

  it.runIf(dotnetAvailable() && needsRoot('a private mount namespace') && hasTool('unshare', 'util-linux'))(
    'the own socket of a .NET target in its own mount namespace still works, through /proc/PID/root',
    async () => {
      const t = track(
        await startDotnetTarget({
          wrapper: OWN_TMP,
        }),
      );
      const info = await dotnetProcessInfo(t.pid);
      expect(info.socket).toBe(`/proc/${t.pid}/root${socketPath(t.pid)}`);
      expect(info.processId).toBe(t.pid);
    },
  );
});
