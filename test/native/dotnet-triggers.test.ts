// The .NET triggers against a real target through the real Monitor: each fires on the target's spike,
// exception or gauge and not without it; several share one EventPipe session; a killed target ends them
// cleanly; Ctrl-C stops the session. Through the CLI: every trigger is armed when the settings block is
// printed, a condition already true then fires, and no event is lost while a dump is being written.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import type { Action, ActionContext } from '../../src/actions/action.js';
import { Monitor, type MonitorEvent } from '../../src/index.js';
import { EventPipeSession } from '../../src/runtimes/dotnet/eventpipe.js';
import {
  CounterTrigger,
  dotnetConnections,
  ExceptionTrigger,
  GcGenerationTrigger,
  GcMemoryTrigger,
} from '../../src/runtimes/dotnet/index.js';
import type { Firing, Trigger } from '../../src/triggers/trigger.js';
import { start as startCli } from '../e2e/run-cli.js';
import { type DotnetTarget, dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { sleep, trackProcesses, waitFor } from '../helpers/processes.js';

const ok = dotnetAvailable();
const track = trackProcesses();

afterAll(async () => {
  await dotnetConnections.closeAll();
});

/** Records the firings (the dump action is exercised by the CLI tests; here the trigger is what is tested). */
class Recorder implements Action {
  readonly kind = 'record';
  readonly firings: Firing[] = [];
  async run(ctx: ActionContext) {
    this.firings.push(ctx.firing);
    return { message: `recorded ${ctx.firing.reason}` };
  }
}

function monitor(
  pid: number,
  triggers: Trigger[],
  opts: { count?: number; cooldownMs?: number; sustainMs?: number } = {},
) {
  const rec = new Recorder();
  const ctl = new AbortController();
  const events: MonitorEvent[] = [];
  const m = new Monitor({
    target: { pid },
    triggers,
    actions: [rec],
    count: opts.count ?? 1,
    cooldownMs: opts.cooldownMs ?? 0,
    sustainMs: opts.sustainMs ?? 0,
    signal: ctl.signal,
  });
  m.on((e) => events.push(e));
  const run = m.run();
  const errors = () => events.filter((e) => e.type === 'error');
  return { rec, ctl, run, events, errors };
}

let start: MockInstance<typeof EventPipeSession.start>;
beforeEach(() => {
  start = vi.spyOn(EventPipeSession, 'start');
});
afterEach(() => {
  start.mockRestore();
});

/** Waits until the test's `nth` EventPipe session has started (the runtime answered CollectTracing). */
async function sessionUp(nth = 1): Promise<void> {
  await waitFor(() => start.mock.results.length >= nth, 20_000, 'the EventPipe session');
  await start.mock.results[nth - 1]!.value;
}

describe.runIf(ok)('.NET triggers', () => {
  it('-gcm fires when the managed heap passes the threshold after a collection, and not before', async () => {
    const t = track(await startDotnetTarget());
    const m = monitor(t.pid, [new GcMemoryTrigger('total', [30])]);
    await sessionUp();
    await t.send('gc 2', 'collected');
    await sleep(1000);
    expect(m.rec.firings).toEqual([]);
    await t.send('alloc 40', 'allocated');
    await t.send('gc 2', 'collected');
    expect((await m.run).reason).toBe('done');
    const f = m.rec.firings[0]!;
    expect(f.tag).toBe('gc_size');
    expect(f.value).toBeGreaterThanOrEqual(30);
    expect(f.threshold).toBe(30);
    const heap = (f.details as { heapBytes: Record<string, number> }).heapBytes;
    // 40 arrays of 1 MiB live on the large object heap.
    expect(heap.loh).toBeGreaterThanOrEqual(40 * 2 ** 20);
    expect(m.errors()).toEqual([]);
  });

  it('-gcm LOH: judges one heap, thresholds in turn, one dump each', async () => {
    const t = track(await startDotnetTarget());
    const m = monitor(t.pid, [new GcMemoryTrigger('loh', [10, 20])], { count: 2 });
    await sessionUp();
    await t.send('alloc 12', 'allocated');
    await t.send('gc 2', 'collected');
    await waitFor(() => m.rec.firings.length === 1, 10_000, 'the first threshold');
    await t.send('alloc 10', 'allocated');
    await t.send('gc 2', 'collected');
    expect((await m.run).reason).toBe('done');
    expect(m.rec.firings.map((f) => f.threshold)).toEqual([10, 20]);
  });

  it('-gcgen 2 dumps when a gen2 collection starts and when it ends, not on gen0 collections', async () => {
    const t = track(await startDotnetTarget());
    const m = monitor(t.pid, [new GcGenerationTrigger(2)], { count: 2 });
    await sessionUp();
    await t.send('gc 0', 'collected');
    await sleep(1000);
    expect(m.rec.firings).toEqual([]);
    await t.send('gc 2', 'collected');
    expect((await m.run).reason).toBe('done');
    expect(m.rec.firings.map((f) => f.reason)).toEqual([
      expect.stringMatching(/generation 2 started$/),
      expect.stringMatching(/generation 2 finished$/),
    ]);
    expect(m.rec.firings[0]!.value).toBe(m.rec.firings[1]!.value);
  });

  it('-e -f: fires on a matching first-chance exception only', async () => {
    const t = track(await startDotnetTarget());
    const m = monitor(t.pid, [new ExceptionTrigger(['*OrderFailed*'])]);
    await sessionUp();
    await t.send('throw InvalidOperationException not this one', 'thrown');
    await sleep(1000);
    expect(m.rec.firings).toEqual([]);
    await t.send('throw OrderFailedException order 42 failed', 'thrown');
    expect((await m.run).reason).toBe('done');
    expect(m.rec.firings[0]).toMatchObject({
      tag: 'exception',
      reason: 'Exception Fixture.OrderFailedException: order 42 failed',
      details: { type: 'Fixture.OrderFailedException', message: 'order 42 failed' },
    });
  });

  it('-e without a filter fires on any exception; a filter matches anywhere in "Type: message", as ProcDump does', () => {
    const any = new ExceptionTrigger();
    expect(any.matches('System.InvalidOperationException', 'x')).toBe(true);
    const byMessage = new ExceptionTrigger(['System.InvalidOperationException: *timeout*']);
    expect(byMessage.matches('System.InvalidOperationException', 'a timeout happened')).toBe(true);
    expect(byMessage.matches('System.InvalidOperationException', 'bad state')).toBe(false);
    const exact = new ExceptionTrigger(['system.invalidoperationexception']);
    expect(exact.matches('System.InvalidOperationException', 'bad state')).toBe(true);
    // ProcDump wraps each filter in *...*: a part of the type or of the message is enough.
    const message = 'Operation is not valid due to the current state of the object.';
    for (const f of [
      'invalid',
      'current state',
      'Invali*xception',
      'OPERATIONEXCEPTION: operation',
      'System',
    ])
      expect(new ExceptionTrigger([f]).matches('System.InvalidOperationException', message), f).toBe(true);
    for (const f of ['timeout', 'current  state', 'Exception*timeout'])
      expect(new ExceptionTrigger([f]).matches('System.InvalidOperationException', message), f).toBe(false);
  });

  it('-pc fires on a Metrics gauge, -pcl on an EventCounter, each in its own unit', async () => {
    const t = track(await startDotnetTarget());
    await t.send('gauge 20', 'gauge');
    const above = monitor(t.pid, [
      new CounterTrigger({ provider: 'Tripdump.Fixture', counter: 'fixture.gauge' }, 'above', 50),
    ]);
    await sessionUp();
    await sleep(1500);
    expect(above.rec.firings).toEqual([]);
    await t.send('gauge 80', 'gauge');
    expect((await above.run).reason).toBe('done');
    expect(above.rec.firings[0]).toMatchObject({ tag: 'perfcounter', value: 80, threshold: 50 });
    expect((above.rec.firings[0]!.details as { values: { value: number }[] }).values.at(-1)!.value).toBe(80);

    const below = monitor(t.pid, [
      new CounterTrigger({ provider: 'Tripdump-Fixture', counter: 'fixture-gauge' }, 'below', 10),
    ]);
    await sessionUp(2);
    await sleep(1500);
    expect(below.rec.firings).toEqual([]);
    await t.send('gauge 5', 'gauge');
    expect((await below.run).reason).toBe('done');
    expect(below.rec.firings[0]).toMatchObject({ value: 5, threshold: 10 });
  });

  it('--for: a counter must stay past its threshold that long before it fires', async () => {
    const t = track(await startDotnetTarget());
    await t.send('gauge 80', 'gauge');
    const started = Date.now();
    const m = monitor(
      t.pid,
      [new CounterTrigger({ provider: 'Tripdump.Fixture', counter: 'fixture.gauge' }, 'above', 50)],
      { sustainMs: 3000 },
    );
    expect((await m.run).reason).toBe('done');
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
  });

  it('several triggers on one target share one EventPipe session carrying the union of their providers', async () => {
    const t = track(await startDotnetTarget());
    {
      const m = monitor(
        t.pid,
        [
          new GcMemoryTrigger('total', [30]),
          new ExceptionTrigger(['*OrderFailed*']),
          new CounterTrigger({ provider: 'Tripdump.Fixture', counter: 'fixture.gauge' }, 'above', 50),
        ],
        { count: 3 },
      );
      await sessionUp();
      await t.send('throw OrderFailedException shared', 'thrown');
      await waitFor(() => m.rec.firings.length === 1, 10_000, 'the exception');
      await t.send('gauge 99', 'gauge');
      await waitFor(() => m.rec.firings.length === 2, 10_000, 'the gauge');
      await t.send('alloc 40', 'allocated');
      await t.send('gc 2', 'collected');
      expect((await m.run).reason).toBe('done');
      expect(m.rec.firings.map((f) => f.tag)).toEqual(['exception', 'perfcounter', 'gc_size']);
      expect(start).toHaveBeenCalledTimes(1);
      const providers = start.mock.calls[0]![0].providers;
      expect(providers.find((p) => p.name === 'Microsoft-Windows-DotNETRuntime')?.keywords).toBe(0x8001n);
      expect(providers.map((p) => p.name)).toContain('System.Diagnostics.Metrics');
      // The last user gone, the session is stopped and the connection closed.
      expect(dotnetConnections.size).toBe(0);
    }
  });

  it('a target killed mid-session ends its triggers cleanly', async () => {
    const t = track(await startDotnetTarget());
    const m = monitor(t.pid, [
      new ExceptionTrigger(),
      new CounterTrigger({ provider: 'System.Runtime', counter: 'cpu-usage' }, 'above', 1000),
    ]);
    await sessionUp();
    await t.kill();
    const summary = await m.run;
    expect(summary.reason).toBe('exited');
    expect(m.errors()).toEqual([]);
    expect(dotnetConnections.size).toBe(0);
  });

  it('Ctrl-C stops the monitor and the session within a second', async () => {
    const t = track(await startDotnetTarget());
    const m = monitor(t.pid, [new ExceptionTrigger()]);
    await sessionUp();
    const t0 = performance.now();
    m.ctl.abort();
    expect((await m.run).reason).toBe('aborted');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(dotnetConnections.size).toBe(0);
    // The target runs on and answers a new session.
    await t.send('gc 0', 'collected');
  });
});

/** Runs the CLI on a .NET target in a folder of its own; `dumps()` lists what it wrote. */
function cli(args: string[]) {
  const dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-triggers-'));
  dirs.push(dir);
  const run = startCli([...args, dir]);
  track(run.child);
  let code: number | null | undefined;
  void run.exit.then((c) => {
    code = c;
  });
  return {
    ...run,
    dir,
    dumps: () => readdirSync(dir).sort(),
    /** The exit code, waiting at most `ms` for it (a trigger that missed never exits). */
    code: (ms: number, what: string) =>
      waitFor(() => code !== undefined && { code }, ms, what).then((c) => c.code),
    block: () => waitFor(() => run.out().includes('Press Ctrl-C'), 60_000, 'the settings block'),
  };
}
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe.runIf(ok)('.NET triggers through the CLI: armed before the settings block, no event lost', () => {
  it('-gcm 150 -n 1: 250 MB allocated the moment the settings block is printed, then idle: a dump in 20 runs of 20', async () => {
    let dumped = 0;
    for (let i = 0; i < 20; i++) {
      const t: DotnetTarget = track(await startDotnetTarget());
      const run = cli(['-gcm', '150', '-n', '1', String(t.pid)]);
      await run.block();
      await t.send('alloc 250', 'allocated');
      expect(await run.code(60_000, `the dump of run ${i + 1} (${dumped} dumped so far)`)).toBe(0);
      expect(run.dumps()).toHaveLength(1);
      expect(run.out()).toMatch(/Trigger: \.NET total heap [\d.]+ MB >= 150 MB/);
      dumped++;
      await t.kill();
      rmSync(run.dir, { recursive: true, force: true });
    }
    expect(dumped).toBe(20);
  }, 1_200_000);

  it('-gcm on a heap already above the threshold when it starts (no collection after): fires at once', async () => {
    const t = track(await startDotnetTarget());
    await t.send('gc 2', 'collected');
    await t.send('alloc 200', 'allocated');
    const run = cli(['-gcm', '150', '-n', '1', String(t.pid)]);
    expect(await run.code(60_000, 'the dump')).toBe(0);
    expect(run.dumps()).toHaveLength(1);
  }, 120_000);

  it('-e and -gcgen: an exception or a collection the moment the settings block is printed is caught', async () => {
    const t = track(await startDotnetTarget());
    {
      const run = cli(['-e', '-n', '1', String(t.pid)]);
      await run.block();
      await t.send('throw InvalidOperationException at once', 'thrown');
      expect(await run.code(60_000, 'the exception dump')).toBe(0);
      expect(run.dumps()).toHaveLength(1);
      // What the dump holds, and how late it is, said at the firing.
      expect(run.out()).toMatch(
        /Trigger: Exception System\.InvalidOperationException: at once on process ID: \d+ \(\d+ ms after the throw\)/,
      );
      expect(run.out()).toMatch(/holds the exception object .* not the throw on the thread's stack/);
    }
    {
      const run = cli(['-gcgen', '0', '-n', '1', String(t.pid)]);
      await run.block();
      await t.send('gc 0', 'collected');
      expect(await run.code(60_000, 'the collection dump')).toBe(0);
      expect(run.dumps()).toHaveLength(1);
    }
  }, 180_000);

  it('-pc: a counter already past its threshold when it starts fires', async () => {
    const t = track(await startDotnetTarget());
    await t.send('gauge 80', 'gauge');
    const run = cli(['-pc', 'Tripdump.Fixture:fixture.gauge', '50', '-n', '1', String(t.pid)]);
    expect(await run.code(60_000, 'the counter dump')).toBe(0);
    expect(run.dumps()).toHaveLength(1);
  }, 120_000);

  it.each([
    ['-gcm 10,20,30', ['-gcm', '10,20,30'], [10, 20, 30]],
    ['-gcm LOH:10,20,30', ['-gcm', 'LOH:10,20,30'], [10, 20, 30]],
    ['-gcm 2:10,20', ['-gcm', '2:10,20'], [10, 20]],
  ])(
    '%s: collections back to back while the first dump is written, then freed: one dump per threshold',
    async (name, args, thresholds) => {
      const t = track(await startDotnetTarget());
      const run = cli([...args, '-s', '0', String(t.pid)]);
      await run.block();
      // After each pair of collections the heap is past the next threshold (gen2 holds small arrays after
      // the second); then everything is freed, so only the collections' events can explain each dump.
      for (let i = 0; i < thresholds.length; i++) {
        await t.send(name.includes('2:') ? 'allocsmall 12' : 'alloc 12', 'allocated');
        await t.send('gc 2', 'collected');
        await t.send('gc 2', 'collected');
      }
      await t.send('free', 'freed');
      expect(await run.code(120_000, 'one dump per threshold')).toBe(0);
      expect(run.dumps()).toHaveLength(thresholds.length);
      const fired = [...run.out().matchAll(/Trigger: \.NET \S+ heap [\d.]+ MB >= (\d+) MB/g)].map((m) =>
        Number(m[1]),
      );
      expect(fired).toEqual(thresholds);
    },
    180_000,
  );

  it.each([
    ['with the default cooldown', []],
    ['with -s 0', ['-s', '0']],
  ])(
    '-n 2 -e: two exceptions thrown back to back make two dumps (%s)',
    async (_name, cooldown) => {
      const t = track(await startDotnetTarget());
      const run = cli(['-e', '-n', '2', ...cooldown, String(t.pid)]);
      await run.block();
      await t.send('throws 2 InvalidOperationException back to back', 'thrown 2');
      expect(await run.code(60_000, 'two dumps')).toBe(0);
      expect(run.dumps()).toHaveLength(2);
    },
    120_000,
  );
});
