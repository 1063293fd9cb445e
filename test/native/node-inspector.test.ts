// Reaching a Node target's inspector (src/runtimes/node/inspector.ts) against real Node processes: opened
// with SIGUSR1 on whatever port it really takes, shared by every user, closed again by the last release;
// joined and left open when it was open before; refused with a typed error when it cannot be opened; and
// reached from inside another network namespace. What is listening is read from /proc by the test itself.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProcessGoneError } from '../../src/errors.js';
import { processKey } from '../../src/runtimes/connections.js';
import { detectRuntime } from '../../src/runtimes/detect.js';
import { handlesSigusr1, inspectHints, isNodeProcess } from '../../src/runtimes/node/detect.js';
import { NodeInspectorError } from '../../src/runtimes/node/errors.js';
import { NodeInspector, nodeInspectors } from '../../src/runtimes/node/inspector.js';
import { trackProcesses, waitFor } from '../helpers/processes.js';
import { hasTool, needsRoot } from '../helpers/requirements.js';
import { childrenOf, listeningSockets, portOf, spawnNodeTarget, withoutSigusr1 } from './node-target.js';

const track = trackProcesses();

/** Whether pid is a running inspector guard. */
function isGuard(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'tripdump-guard';
  } catch {
    return false;
  }
}

async function heapUsed(i: NodeInspector): Promise<number> {
  const r = await i.send<{ usedSize: number }>('Runtime.getHeapUsage');
  return r.usedSize;
}

describe('detection', () => {
  it('tells Node processes from others, and reads the inspector flags and the SIGUSR1 handler', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const no = withoutSigusr1();
    const d = track(
      await spawnNodeTarget({ ...no, nodeArgs: [...(no.nodeArgs ?? []), '--inspect-port=7777'] }),
    );
    const sleeper = track(spawn('sleep', ['30'], { stdio: 'ignore' }));
    await waitFor(() => readyExe(sleeper.pid!), 5000, 'sleep to exec');
    expect(isNodeProcess(t.pid)).toBe(true);
    expect(await detectRuntime(t.pid)).toMatchObject({ kind: 'node', executable: process.execPath });
    expect(isNodeProcess(sleeper.pid!)).toBe(false);
    expect(await detectRuntime(sleeper.pid!)).toEqual({ kind: 'native' });
    expect(inspectHints(t.pid)).toEqual({ atLaunch: false, port: 0 });
    expect(inspectHints(d.pid)).toEqual({ atLaunch: false, port: 7777 });
    expect(handlesSigusr1(t.pid)).toBe(true);
    expect(handlesSigusr1(d.pid)).toBe(false);
    expect(() => isNodeProcess(4_194_304)).toThrow(ProcessGoneError);
  });
});

function readyExe(pid: number): boolean {
  try {
    return !isNodeProcess(pid);
  } catch {
    return false;
  }
}

describe('NodeInspector', () => {
  it('opens the inspector with SIGUSR1 on the port it really takes, and closes it again', async () => {
    // --inspect-port=0: the port is random, so nothing but the real socket scan can find it.
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    expect(listeningSockets(t.pid)).toEqual([]);
    const i = await NodeInspector.open(processKey(t.pid), new AbortController().signal);
    try {
      expect(i.openedByUs).toBe(true);
      const listening = listeningSockets(t.pid);
      expect(listening.map(portOf)).toEqual([i.endpoint.port]);
      expect(i.endpoint.port).not.toBe(9229);
      expect(await heapUsed(i)).toBeGreaterThan(0);
      // The guard runs while the inspector is open; it is no child of ours (it must outlive us).
      expect(isGuard(i.guardPid!)).toBe(true);
      expect(childrenOf(process.pid)).toEqual([t.pid]);
    } finally {
      await i.close();
    }
    expect(listeningSockets(t.pid)).toEqual([]);
    // The guard saw the inspector close and exited (and was reaped).
    await waitFor(() => !isGuard(i.guardPid!), 5000, 'the guard to exit');
    const seen = t.beats.length;
    await t.beatsAfter(5);
    expect(t.beats.length).toBeGreaterThan(seen);
  });

  it('shares one connection between concurrent users; the last release closes it', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const [a, b] = await Promise.all([nodeInspectors.acquire(t.pid), nodeInspectors.acquire(t.pid)]);
    expect(a.connection).toBe(b.connection);
    expect(listeningSockets(t.pid).length).toBe(1);
    await a.release();
    expect(await heapUsed(b.connection)).toBeGreaterThan(0);
    expect(listeningSockets(t.pid).length).toBe(1);
    await b.release();
    expect(listeningSockets(t.pid)).toEqual([]);
    expect(nodeInspectors.size).toBe(0);
  });

  it('joins an inspector that was open before and leaves it open', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect=127.0.0.1:0'] }));
    const open = listeningSockets(t.pid);
    expect(open.length).toBe(1);
    const i = await NodeInspector.open(processKey(t.pid), new AbortController().signal);
    expect(i.openedByUs).toBe(false);
    expect(i.endpoint.port).toBe(portOf(open[0]!));
    expect(await heapUsed(i)).toBeGreaterThan(0);
    await i.close();
    expect(listeningSockets(t.pid)).toEqual(open);
  });

  it('refuses a target started with --disable-sigusr1, which stays alive with nothing open', async () => {
    const t = track(await spawnNodeTarget(withoutSigusr1()));
    const e = await NodeInspector.open(processKey(t.pid), new AbortController().signal).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(NodeInspectorError);
    expect((e as NodeInspectorError).reason).toBe('sigusr1-disabled');
    expect((e as Error).message).toMatch(/SIGUSR1/);
    await t.beatsAfter(3);
    expect(t.exited).toBe(false);
    expect(listeningSockets(t.pid)).toEqual([]);
  });

  it('says why when the inspector cannot open: its port is taken', async () => {
    // The first target holds 127.0.0.1:PORT open; the second is told to use the same port.
    const holder = track(await spawnNodeTarget({ nodeArgs: ['--inspect=127.0.0.1:0'] }));
    const port = portOf(listeningSockets(holder.pid)[0]!);
    const t = track(await spawnNodeTarget({ nodeArgs: [`--inspect-port=${port}`] }));
    const e = await NodeInspector.open(processKey(t.pid), new AbortController().signal, {
      openTimeoutMs: 1500,
    }).catch((x: unknown) => x);
    expect((e as NodeInspectorError).reason).toBe('not-opened');
    expect((e as Error).message).toContain(`port ${port} is already in use`);
    expect(listeningSockets(t.pid)).toEqual([]);
    await t.beatsAfter(3);
  });

  it('refuses a process that is not Node.js', async () => {
    const sleeper = track(spawn('sleep', ['30'], { stdio: 'ignore' }));
    await waitFor(() => readyExe(sleeper.pid!), 5000, 'sleep to exec');
    const e = await NodeInspector.open(processKey(sleeper.pid!), new AbortController().signal).catch(
      (x: unknown) => x,
    );
    expect((e as NodeInspectorError).reason).toBe('not-node');
  });

  it('reaches a target in another network namespace from inside it', async () => {
    if (
      !needsRoot('entering a network namespace (setns)') ||
      !hasTool('unshare', 'util-linux') ||
      !hasTool('ip', 'iproute2')
    )
      return;
    const t = track(
      await spawnNodeTarget({
        wrapper: ['unshare', '-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"'],
        nodeArgs: ['--inspect-port=0'],
      }),
    );
    const i = await NodeInspector.open(processKey(t.pid), new AbortController().signal);
    try {
      // Its loopback is not ours: the port is not listening in our namespace.
      expect(listeningSockets(process.pid).map(portOf)).not.toContain(i.endpoint.port);
      expect(await heapUsed(i)).toBeGreaterThan(0);
    } finally {
      await i.close();
    }
    expect(listeningSockets(t.pid)).toEqual([]);
    await t.beatsAfter(3);
  });
});
