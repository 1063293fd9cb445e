// The Monitor as a library: triggers, the exec and history actions, sustain and count, an AbortSignal.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ActionContext,
  ExecAction,
  HistoryAction,
  Monitor,
  type MonitorEvent,
  ThresholdTrigger,
  TimerTrigger,
  UsageError,
} from '../../src/index.js';
import { spawnTarget, trackProcesses } from '../helpers/processes.js';

const track = trackProcesses();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-lib-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('Monitor', () => {
  it('runs exec and history actions in order, with {pid} {path} {trigger} filled in', async () => {
    const t = track(await spawnTarget('workload', ['--delay', '300', '--threads', '4']));
    const events: MonitorEvent[] = [];
    const history = path.join(dir, 'history.json');
    const monitor = new Monitor({
      target: { pid: t.pid },
      triggers: [new ThresholdTrigger('threads', 'above', [5])],
      actions: [
        new HistoryAction(() => history),
        // No shell: each argument is passed as is, tokens replaced inside it.
        new ExecAction(['/bin/cp', '{path}', path.join(dir, 'copy-{trigger}-{pid}.json')]),
      ],
      pollMs: 50,
    }).on((e) => events.push(e));
    const summary = await monitor.run();
    expect(summary).toMatchObject({ reason: 'done', firings: 1, written: [history] });
    const side = JSON.parse(readFileSync(history, 'utf8'));
    expect(side.trigger).toMatchObject({ tag: 'thread', value: 5, threshold: 5 });
    expect(side.samples.at(-1).threads).toBe(5);
    expect(side.samples.length).toBeGreaterThan(2); // the samples before the crossing are there too
    expect(readFileSync(path.join(dir, `copy-thread-${t.pid}.json`), 'utf8')).toBe(
      readFileSync(history, 'utf8'),
    );
    expect(events.map((e) => e.type).filter((x) => x !== 'sample' && x !== 'sweep')).toEqual([
      'target',
      // Polled triggers only: armed as soon as the target is watched.
      'armed',
      'fire',
      'action',
      'action',
    ]);
  });

  it('keeps the samples before a firing only for rules with an action that reads them', async () => {
    const t = track(await spawnTarget('workload', ['--delay', '300', '--threads', '4']));
    const seen: Record<string, number> = {};
    const probe = (name: string, usesHistory: boolean) => ({
      kind: name,
      usesHistory,
      run: async (ctx: ActionContext) => {
        seen[name] = ctx.history.length;
        return { message: '' };
      },
    });
    const rule = (name: string, usesHistory: boolean) => ({
      name,
      target: { pid: t.pid },
      triggers: [new ThresholdTrigger('threads', 'above', [5])],
      actions: [probe(name, usesHistory)],
    });
    await new Monitor({ rules: [rule('reads', true), rule('ignores', false)], pollMs: 50 }).run();
    // The workload starts a thread every 300 ms: several polls of history before the crossing.
    expect(seen.reads).toBeGreaterThan(2);
    expect(seen.ignores).toBe(0);
  });

  it('sleeps through quiet polls: they reach JS in one batch with the firing one, none lost', async () => {
    const t = track(await spawnTarget('workload', ['--delay', '700', '--threads', '4']));
    // Which turn of the event loop each sample reached JS in: a batch is delivered within one turn.
    const arrivals: number[] = [];
    let turn = 0;
    let inTurn = false;
    const history = path.join(dir, 'quiet.json');
    const summary = await new Monitor({
      target: { pid: t.pid },
      triggers: [new ThresholdTrigger('threads', 'above', [5])],
      actions: [new HistoryAction(() => history)],
      pollMs: 30,
    })
      .on((e) => {
        if (e.type !== 'sample') return;
        if (!inTurn) {
          turn++;
          inTurn = true;
          setImmediate(() => {
            inTurn = false;
          });
        }
        arrivals.push(turn);
      })
      .run();
    expect(summary.firings).toBe(1);
    expect(arrivals.length).toBeGreaterThan(15);
    // Woken per poll, each sample would come in a turn of its own; batched, only the first (the target's
    // first sweep is news) comes apart from the rest, which come with the firing one.
    expect(new Set(arrivals).size).toBeLessThanOrEqual(2);
    const times: number[] = JSON.parse(readFileSync(history, 'utf8')).samples.map(
      (x: { time: number }) => x.time,
    );
    expect(times.length).toBe(arrivals.length);
    // None lost on the way: the samples are a poll apart (the median: a loaded machine may delay one).
    const gaps = times
      .slice(1)
      .map((x, i) => x - times[i]!)
      .sort((a, b) => a - b);
    expect(gaps[gaps.length >> 1]!).toBeLessThan(60);
  });

  it('a failing action stops the ones after it and is reported', async () => {
    const t = track(await spawnTarget('workload', []));
    const errors: string[] = [];
    const summary = await new Monitor({
      target: { pid: t.pid },
      triggers: [new TimerTrigger()],
      actions: [new ExecAction(['/bin/false']), new HistoryAction(() => path.join(dir, 'never.json'))],
      pollMs: 20,
    })
      .on((e) => {
        if (e.type === 'error') errors.push(`${e.kind}: ${e.error.message}`);
      })
      .run();
    expect(summary.firings).toBe(1);
    expect(errors).toEqual(['exec: command /bin/false exited with 1']);
    expect(existsSync(path.join(dir, 'never.json'))).toBe(false);
  });

  it('stops at once when its AbortSignal aborts', async () => {
    const t = track(await spawnTarget('workload', []));
    const ac = new AbortController();
    const run = new Monitor({
      target: { pid: t.pid },
      triggers: [new ThresholdTrigger('cpu', 'above', [90])],
      actions: [],
      pollMs: 1000,
      signal: ac.signal,
    }).run();
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    ac.abort();
    expect((await run).reason).toBe('aborted');
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it('rejects options that cannot work', () => {
    const base = { target: { pid: 1 }, actions: [] };
    expect(() => new Monitor({ ...base, triggers: [] })).toThrow(UsageError);
    expect(() => new Monitor({ ...base, triggers: [new TimerTrigger()], pollMs: 0 })).toThrow(
      /pollMs must be ≥ 1/,
    );
    expect(() => new ThresholdTrigger('memory', 'above', [-1])).toThrow(/threshold must be ≥ 0/);
  });
});
