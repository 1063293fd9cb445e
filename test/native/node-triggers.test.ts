// The monitor's Node triggers through the CLI (dist/cli/main.js) against real Node targets: --heap-used
// fires on the heap spike and not without it, writing a heap snapshot; --loop-delay fires while the loop is
// blocked and writes the blocked loop's stack; --node-dump chooses what a firing writes; bad input is
// refused with exit 2. After each run the inspector is closed and the target beats on.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Run, start as startCli } from '../e2e/run-cli.js';
import { sleep, trackProcesses, waitFor } from '../helpers/processes.js';
import { listeningSockets, type NodeTarget, spawnNodeTarget } from './node-target.js';

const track = trackProcesses();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-node-triggers-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function start(args: readonly string[]): Run {
  const run = startCli(args, { cwd: dir });
  track(run.child);
  return run;
}

const files = () => readdirSync(dir).sort();

async function leftAsItWas(t: NodeTarget): Promise<void> {
  await waitFor(() => listeningSockets(t.pid).length === 0, 20_000, 'the inspector to close');
  await t.beatsAfter(5);
}

describe('--heap-used', () => {
  it('fires when the V8 heap passes the threshold, writes a heap snapshot (and its history when asked)', async () => {
    const t = track(await spawnNodeTarget());
    const hist = mkdtempSync(path.join(tmpdir(), 'tripdump-node-history-'));
    const run = start(['--heap-used', '40', '-pf', '200', '--history', hist, String(t.pid)]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 20_000, 'the monitor to start');
    expect(run.out()).toMatch(/Heap Used Threshold:\s+>= 40 MB/);
    // Not without the spike: the heap of the idle target stays far below.
    await sleep(1500);
    expect(files()).toEqual([]);
    t.command('grow 50');
    expect(await run.exit).toBe(0);
    const snap = files().find((f) => f.endsWith('.heapsnapshot'))!;
    expect(snap).toMatch(new RegExp(`^node_heapused_\\d{6}_\\d{6}\\.${t.pid}\\.heapsnapshot$`));
    // Like a dump: the snapshot alone in the dump folder, the sample history in its own.
    expect(files()).toEqual([snap]);
    expect(readdirSync(hist)).toEqual([`${snap}.json`]);
    expect(statSync(path.join(dir, snap)).mode & 0o777).toBe(0o600);
    const side = JSON.parse(readFileSync(path.join(hist, `${snap}.json`), 'utf8'));
    rmSync(hist, { recursive: true });
    expect(side.trigger.tag).toBe('heapused');
    expect(side.trigger.value).toBeGreaterThanOrEqual(40);
    expect(side.trigger.threshold).toBe(40);
    expect(side.samples.length).toBeGreaterThan(0);
    expect(side.heap.bytes).toBe(statSync(path.join(dir, snap)).size);
    const parsed = JSON.parse(readFileSync(path.join(dir, snap), 'utf8'));
    expect(parsed.strings).toContain('TripdumpFixtureLeak');
    expect(run.out()).toMatch(/Trigger: Heap Used [\d.]+ MB >= 40 MB/);
    await leftAsItWas(t);
    // A bound for a loaded machine (a heap snapshot is seconds of the target's own work), not a timing check.
  }, 180_000);
});

describe('armed before the settings block', () => {
  it('--heap-used on a heap already above the threshold when tripdump starts: fires', async () => {
    const t = track(await spawnNodeTarget({ env: { FIXTURE_HEAP_MB: '60' } }));
    const run = start(['--heap-used', '40', '-pf', '200', String(t.pid)]);
    expect(await run.exit).toBe(0);
    expect(files()).toEqual([expect.stringMatching(/\.heapsnapshot$/)]);
    await leftAsItWas(t);
  });

  it('--loop-delay: a block that starts the moment the settings block is printed is caught', async () => {
    const t = track(await spawnNodeTarget());
    const run = start(['--loop-delay', '300', '-pf', '100', String(t.pid)]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 20_000, 'the monitor to start');
    const from = t.lines.length;
    t.command('block 3000');
    await t.line('blocking', 10_000, from);
    expect(await run.exit).toBe(0);
    expect(files()).toEqual([expect.stringMatching(/\.stack\.json$/)]);
    await t.line('unblocked', 10_000, from);
    await leftAsItWas(t);
  });
});

describe('--loop-delay', () => {
  it('fires while the loop is blocked and writes the blocked stack; not without a block', async () => {
    const t = track(await spawnNodeTarget());
    const run = start(['--loop-delay', '300', '-pf', '100', String(t.pid)]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 20_000, 'the monitor to start');
    await waitFor(() => t.stderr.includes('Debugger attached.'), 20_000, 'the inspector session');
    await sleep(1500);
    expect(files()).toEqual([]);
    const from = t.lines.length;
    t.command('block 3000');
    await t.line('blocking', 10_000, from);
    const beatsBefore = t.beats.length;
    expect(await run.exit).toBe(0);
    const stackFile = files().find((f) => f.endsWith('.stack.json'))!;
    expect(stackFile).toMatch(new RegExp(`^node_loopdelay_\\d{6}_\\d{6}\\.${t.pid}\\.stack\\.json$`));
    expect(files()).toEqual([stackFile]);
    const stack = JSON.parse(readFileSync(path.join(dir, stackFile), 'utf8'));
    expect(stack.trigger.tag).toBe('loopdelay');
    expect(stack.trigger.value).toBeGreaterThanOrEqual(300);
    expect(stack.process.pid).toBe(t.pid);
    expect(stack.frames[0].functionName).toBe('blockTheLoopInNamedFunction');
    // Captured as it was blocked: before the first heartbeat after the block.
    await t.line('unblocked', 10_000, from);
    await t.beatsAfter(1);
    expect(t.beats[beatsBefore]!).toBeGreaterThan(Date.parse(stack.time));
    expect(run.out()).toMatch(/Trigger: Event loop blocked \d+ ms >= 300 ms/);
    expect(run.out()).toMatch(/JavaScript stack 0 captured: .* \(in blockTheLoopInNamedFunction at /);
    await leftAsItWas(t);
  });

  it('Ctrl-C ends the monitor with nothing written and the inspector closed', async () => {
    const t = track(await spawnNodeTarget());
    const run = start(['--loop-delay', '500', String(t.pid)]);
    await waitFor(() => t.stderr.includes('Debugger attached.'), 20_000, 'the inspector session');
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(0);
    expect(files()).toEqual([]);
    await leftAsItWas(t);
  });
});

describe('--node-dump', () => {
  it('-m on a Node target writes what --node-dump asks (a heap snapshot and a report)', async () => {
    const t = track(await spawnNodeTarget());
    const run = start(['-m', '1', '--node-dump', 'heap,report', String(t.pid)]);
    expect(await run.exit).toBe(0);
    const got = files();
    expect(got.length).toBe(2);
    expect(
      got.filter((f) => /^node_commit_\d{6}_\d{6}\.\d+\.(heapsnapshot|report\.json)$/.test(f)).length,
    ).toBe(2);
    const report = JSON.parse(
      readFileSync(path.join(dir, got.find((f) => f.endsWith('.report.json'))!), 'utf8'),
    );
    expect(report.header.processId).toBe(t.pid);
    expect(run.out()).not.toMatch(/Core dump/);
    await leftAsItWas(t);
  });

  it('refuses bad values and non-Node targets with exit 2, nothing written', async () => {
    const t = track(await spawnNodeTarget());
    const sleeper = track(spawn('sleep', ['30'], { stdio: 'ignore' }));
    await waitFor(
      () => readFileSync(`/proc/${sleeper.pid}/comm`, 'utf8').trim() === 'sleep',
      5000,
      'sleep to exec',
    );
    for (const [args, message] of [
      [['--loop-delay', '0', String(t.pid)], /--loop-delay must be from 1 to/],
      [['--heap-used', 'x', String(t.pid)], /--heap-used needs a number/],
      [
        ['--node-dump', 'core,bogus', '-m', '1', String(t.pid)],
        /'bogus' is not one of core, heap, stack, report, profile/,
      ],
      [['--node-dump', 'heap:5', '-m', '1', String(t.pid)], /only profile takes :SECONDS/],
      [['--heap-used', '10', '-sig', 'USR2', String(t.pid)], /-sig cannot be combined/],
      [['--heap-used', '10', String(sleeper.pid)], /is not a Node\.js process .* the Node switches need one/],
    ] as const) {
      const run = start([...args]);
      expect(await run.exit).toBe(2);
      expect(run.err()).toMatch(message);
    }
    expect(files()).toEqual([]);
    expect(listeningSockets(t.pid)).toEqual([]);
  });
});
