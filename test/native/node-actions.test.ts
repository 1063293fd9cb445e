// What tripdump takes from a Node target (src/runtimes/node/actions.ts), against real Node processes: a
// heap snapshot that parses and holds the fixture's class, the stack of a loop blocked in a named
// function, a diagnostic report, a CPU profile. After each, the inspector is closed again and the target
// beats on; files are 0600 with nothing else left in the folder.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AbortError } from '../../src/errors.js';
import {
  captureNodeStack,
  formatNodeStack,
  writeCpuProfile,
  writeHeapSnapshot,
  writeNodeReport,
} from '../../src/runtimes/node/actions.js';
import { nodeInspectors } from '../../src/runtimes/node/inspector.js';
import { sleep, trackProcesses, waitFor } from '../helpers/processes.js';
import { listeningSockets, type NodeTarget, spawnNodeTarget } from './node-target.js';

const track = trackProcesses();
const dir = mkdtempSync(path.join(tmpdir(), 'tripdump-node-actions-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Nothing left open or paused: no listener, no connection in the pool, heartbeats go on. */
async function leftAsItWas(t: NodeTarget): Promise<void> {
  expect(listeningSockets(t.pid)).toEqual([]);
  expect(nodeInspectors.size).toBe(0);
  await t.beatsAfter(5);
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] }; node_count: number };
  nodes: number[];
  strings: string[];
}

/** Counts the snapshot's nodes of type object named `name` (the way DevTools groups them by constructor). */
function countObjects(s: HeapSnapshot, name: string): number {
  const fields = s.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const objectType = s.snapshot.meta.node_types[0].indexOf('object');
  let n = 0;
  for (let i = 0; i < s.nodes.length; i += width)
    if (s.nodes[i + typeAt] === objectType && s.strings[s.nodes[i + nameAt]!] === name) n++;
  return n;
}

describe('Node actions', () => {
  it('streams a heap snapshot that parses and holds the fixture class, 0600, nothing else left', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    t.command('grow 8');
    await t.line('grown 8');
    const file = path.join(dir, 'grown.heapsnapshot');
    const r = await writeHeapSnapshot(t.pid, file);
    expect(r.path).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(file).size).toBe(r.bytes);
    const snap = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
    expect(snap.snapshot.node_count).toBeGreaterThan(0);
    expect(snap.nodes.length).toBe(snap.snapshot.node_count * snap.snapshot.meta.node_fields.length);
    // grow 8 made 8 MiB / 256 B of them.
    expect(countObjects(snap, 'TripdumpFixtureLeak')).toBe(Math.round((8 * 2 ** 20) / 256));
    expect(readdirSync(dir)).toEqual(['grown.heapsnapshot']);
    await leftAsItWas(t);
    rmSync(file);
  });

  it('refuses to overwrite a file unless asked, and leaves it as it was', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const file = path.join(dir, 'taken.heapsnapshot');
    writeFileSync(file, 'mine');
    const e = await writeHeapSnapshot(t.pid, file).catch((x: unknown) => x);
    expect((e as { code?: string }).code).toBe('EEXIST');
    expect(readFileSync(file, 'utf8')).toBe('mine');
    await writeHeapSnapshot(t.pid, file, { overwrite: true });
    expect(JSON.parse(readFileSync(file, 'utf8')).snapshot.node_count).toBeGreaterThan(0);
    expect(readdirSync(dir)).toEqual(['taken.heapsnapshot']);
    await leftAsItWas(t);
    rmSync(file);
  });

  it('a snapshot aborted while the inspector opens leaves nothing open and the target running', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const file = path.join(dir, 'aborted.heapsnapshot');
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 20);
    const e = await writeHeapSnapshot(t.pid, file, { signal: ctl.signal }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect(readdirSync(dir)).toEqual([]);
    // The guard, told to take over, closes the inspector as soon as it is listening (if the abort came
    // before the signal was sent, nothing opens at all).
    const asked = Date.now();
    await waitFor(
      () =>
        t.stderr.includes('Debugger listening')
          ? listeningSockets(t.pid).length === 0
          : Date.now() - asked > 3000,
      30_000,
      'the inspector to open and close',
    );
    await leftAsItWas(t);
  });

  it('a snapshot aborted midway leaves no file; the inspector closes once V8 has finished it', async () => {
    const t = track(
      await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'], env: { FIXTURE_HEAP_MB: '20' } }),
    );
    const file = path.join(dir, 'aborted.heapsnapshot');
    const lease = await nodeInspectors.acquire(t.pid);
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 300);
    const e = await writeHeapSnapshot(t.pid, file, { signal: ctl.signal }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect(readdirSync(dir)).toEqual([]);
    await lease.release();
    // V8 cannot stop a snapshot midway: the target runs the close after it, by tripdump's session or,
    // past the close timeout, its guard.
    await waitFor(() => listeningSockets(t.pid).length === 0, 60_000, 'the inspector to close');
    await leftAsItWas(t);
  });

  it('takes the stack of a loop blocked in a named function, and the target runs on', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const from = t.lines.length;
    t.command('block 4000');
    await t.line('blocking', 10_000, from);
    const beatsBefore = t.beats.length;
    const s = await captureNodeStack(t.pid);
    expect(s.idle).toBe(false);
    expect(s.frames[0]!.functionName).toBe('blockTheLoopInNamedFunction');
    expect(s.frames[0]!.url).toMatch(/target\.mjs$/);
    expect(formatNodeStack(s)).toMatch(/^ {4}at blockTheLoopInNamedFunction \(.*target\.mjs:\d+:\d+\)$/m);
    // Taken while blocked: the first heartbeat after the block came later. (The loop is known to be
    // blocked, so the close is left to the guard: it closes the inspector once the loop turns.)
    await t.beatsAfter(1);
    expect(t.beats[beatsBefore]!).toBeGreaterThan(Date.parse(s.time));
    await t.line('unblocked', 10_000, from);
    await waitFor(() => listeningSockets(t.pid).length === 0, 30_000, 'the guard to close the inspector');
    await leftAsItWas(t);
  });

  it('pauses an idle loop in the next JavaScript it runs (the heartbeat timer) and leaves no pause behind', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const s = await captureNodeStack(t.pid);
    // The heartbeat's timer pauses first in Node's own timer code.
    expect(s.idle).toBe(false);
    expect(s.frames.length).toBeGreaterThan(0);
    const from = t.beats.length;
    await leftAsItWas(t);
    expect(t.maxGap(from)).toBeLessThan(1000);
  });

  it('writes the diagnostic report as JSON', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const file = path.join(dir, 'report.json');
    const r = await writeNodeReport(t.pid, file);
    const report = JSON.parse(readFileSync(file, 'utf8')) as {
      header: { processId: number; nodejsVersion: string };
    };
    expect(report.header.processId).toBe(t.pid);
    expect(report.header.nodejsVersion).toBe(process.version);
    expect(r.bytes).toBe(statSync(file).size);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await leftAsItWas(t);
    rmSync(file);
  });

  it('writes a CPU profile of the given length', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const file = path.join(dir, 'busy.cpuprofile');
    // The connection is opened first, so the profile starts at once and the block falls inside it.
    const lease = await nodeInspectors.acquire(t.pid);
    const from = t.lines.length;
    const profiling = writeCpuProfile(t.pid, file, { seconds: 2 });
    await sleep(300);
    t.command('block 1000');
    const r = await profiling;
    await lease.release();
    await t.line('unblocked', 10_000, from);
    const p = JSON.parse(readFileSync(file, 'utf8')) as {
      nodes: { callFrame: { functionName: string } }[];
      startTime: number;
      endTime: number;
      samples: number[];
    };
    expect((p.endTime - p.startTime) / 1e6).toBeGreaterThanOrEqual(1.9);
    expect(p.samples.length).toBeGreaterThan(0);
    expect(p.nodes.some((n) => n.callFrame.functionName === 'blockTheLoopInNamedFunction')).toBe(true);
    expect(r.durationMs).toBeGreaterThanOrEqual(2000);
    await leftAsItWas(t);
    rmSync(file);
  });
});
