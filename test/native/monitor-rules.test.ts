// A Monitor with several rules (what the agent builds): one discovery sweep for all of them, predicate
// targets, rules replaced while it runs, the admit hook, and actions dispatched for a process it does not
// track. Real processes throughout.
import { afterEach, describe, expect, it } from 'vitest';
import type { Action, ActionContext } from '../../src/actions/action.js';
import { Monitor, type MonitorEvent, type MonitorRule, ThresholdTrigger } from '../../src/index.js';
import { HeapUsedTrigger } from '../../src/runtimes/node/triggers.js';
import { spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';

const track = trackProcesses();
const aborts: AbortController[] = [];
afterEach(() => {
  for (const a of aborts.splice(0)) a.abort();
});

/** An action that records what it was asked to do. */
class Recording implements Action {
  readonly kind = 'record';
  readonly runs: ActionContext[] = [];
  async run(ctx: ActionContext) {
    this.runs.push(ctx);
    return { message: `recorded ${ctx.target.pid}` };
  }
}

function start(options: ConstructorParameters<typeof Monitor>[0]) {
  const ac = new AbortController();
  aborts.push(ac);
  const events: MonitorEvent[] = [];
  const monitor = new Monitor({ ...options, signal: ac.signal }).on((e) => events.push(e));
  const run = monitor.run();
  return { monitor, events, run, stop: () => ac.abort() };
}

describe('Monitor with several rules', () => {
  it('matches each rule by its own predicate, fires per rule, and tells which rule in TargetInfo', async () => {
    const a = track(await spawnTarget('sampler_target', ['--comm', 'mr-alpha', '--threads', '3']));
    const b = track(await spawnTarget('sampler_target', ['--comm', 'mr-beta']));
    const ra = new Recording();
    const rb = new Recording();
    const { monitor, events, stop, run } = start({
      pollMs: 50,
      rules: [
        {
          name: 'alpha',
          target: { match: ({ comm }) => comm === 'mr-alpha' },
          triggers: [new ThresholdTrigger('threads', 'above', [3])],
          actions: [ra],
          count: 1,
        },
        {
          name: 'beta',
          target: { match: ({ comm }) => comm.startsWith('mr-') },
          triggers: [new ThresholdTrigger('threads', 'above', [1])],
          actions: [rb],
          count: 1,
        },
      ],
    });
    await waitFor(() => ra.runs.length === 1 && rb.runs.length === 2, 10_000, 'both rules to fire');
    expect(ra.runs[0]!.target).toMatchObject({ pid: a.pid, rule: 'alpha' });
    expect(rb.runs.map((r) => r.target.pid).sort()).toEqual([a.pid, b.pid].sort());
    expect(rb.runs.every((r) => r.target.rule === 'beta')).toBe(true);
    // One target per rule that matched the process.
    expect(
      monitor
        .targets()
        .filter((t) => t.pid === a.pid)
        .map((t) => t.rule)
        .sort(),
    ).toEqual(['alpha', 'beta']);
    expect(events.filter((e) => e.type === 'sweep' && e.of === 'host').length).toBeGreaterThan(0);
    stop();
    expect((await run).reason).toBe('aborted');
  });

  it('asks an undecided predicate again at each sweep until it decides, for that process only', async () => {
    const a = track(await spawnTarget('sampler_target', ['--comm', 'mr-later']));
    const asked: number[] = [];
    const rec = new Recording();
    const { monitor, stop, run } = start({
      pollMs: 50,
      rules: [
        {
          name: 'later',
          target: {
            match: ({ pid, comm }) => {
              if (comm !== 'mr-later') return false;
              asked.push(pid);
              // Undecided for the first three times it is asked, then a match.
              return asked.length > 3 ? true : undefined;
            },
          },
          triggers: [new ThresholdTrigger('threads', 'above', [0])],
          actions: [rec],
          count: 1,
        },
      ],
    });
    await waitFor(() => rec.runs.length === 1, 10_000, 'the rule to fire once decided');
    expect(asked).toEqual([a.pid, a.pid, a.pid, a.pid]);
    expect(monitor.targets().map((t) => t.pid)).toEqual([a.pid]);
    stop();
    await run;
    // Once decided, never asked again.
    expect(asked.length).toBe(4);
  });

  it('a process whose event trigger cannot watch it is let go with an error; the monitor watches on', async () => {
    const a = track(await spawnTarget('sampler_target', ['--comm', 'mr-refuse']));
    const b = track(await spawnTarget('sampler_target', ['--comm', 'mr-accept', '--threads', '3']));
    const rec = new Recording();
    const { monitor, events, stop, run } = start({
      pollMs: 50,
      rules: [
        {
          // A Node trigger on a process that is not Node: its inspector cannot be reached.
          name: 'heap',
          target: { match: ({ comm }) => comm === 'mr-refuse' },
          triggers: [new HeapUsedTrigger([1])],
          actions: [rec],
        },
        {
          name: 'threads',
          target: { match: ({ comm }) => comm === 'mr-accept' },
          triggers: [new ThresholdTrigger('threads', 'above', [2])],
          actions: [rec],
          count: 1,
        },
      ],
    });
    await waitFor(() => events.some((e) => e.type === 'error'), 10_000, 'the error');
    await waitFor(() => rec.runs.length === 1, 10_000, 'the other rule to fire');
    expect(rec.runs[0]!.target).toMatchObject({ pid: b.pid, rule: 'threads' });
    const errors = events.flatMap((e) => (e.type === 'error' ? [e] : []));
    expect(errors.map((e) => [e.target.pid, e.kind])).toEqual([[a.pid, 'heapused']]);
    expect(monitor.targets().some((t) => t.pid === a.pid)).toBe(false);
    stop();
    expect((await run).reason).toBe('aborted');
  });

  it('setRules keeps the targets of a rule passed again, drops those of a rule left out, matches new ones', async () => {
    const a = track(await spawnTarget('sampler_target', ['--comm', 'mr-keep']));
    const b = track(await spawnTarget('sampler_target', ['--comm', 'mr-new']));
    const keep: MonitorRule = {
      name: 'keep',
      target: { match: ({ comm }) => comm === 'mr-keep' },
      triggers: [new ThresholdTrigger('threads', 'above', [1000])],
      actions: [],
    };
    const gone: MonitorRule = { ...keep, name: 'gone' };
    const { monitor, events, stop } = start({ pollMs: 50, rules: [keep, gone] });
    await waitFor(() => monitor.targets().length === 2, 10_000, 'two targets');
    const added = () => events.filter((e) => e.type === 'target').length;
    const before = added();
    const fresh: MonitorRule = {
      name: 'fresh',
      target: { match: ({ comm }) => comm === 'mr-new' },
      triggers: [new ThresholdTrigger('fds', 'above', [100_000])], // a field not sampled so far
      actions: [],
    };
    monitor.setRules([keep, fresh]);
    await waitFor(() => monitor.targets().some((t) => t.rule === 'fresh'), 10_000, 'the new rule to match');
    expect(
      monitor
        .targets()
        .map((t) => `${t.rule}:${t.pid}`)
        .sort(),
    ).toEqual([`fresh:${b.pid}`, `keep:${a.pid}`]);
    // Only the new rule's target was added: the kept rule's target is the same one as before.
    expect(added() - before).toBe(1);
    // The new field is sampled for it.
    await waitFor(
      () =>
        events.some((e) => e.type === 'sample' && e.target.pid === b.pid && typeof e.record.fds === 'number'),
      10_000,
      'an fds sample',
    );
    stop();
  });

  it('admit: a refused firing runs no action, is reported as suppressed and starts the cooldown', async () => {
    const t = track(await spawnTarget('sampler_target', ['--threads', '2']));
    const rec = new Recording();
    const refusals: string[] = [];
    const { events, stop } = start({
      pollMs: 30,
      rules: [
        {
          name: 'limited',
          target: { pid: t.pid },
          triggers: [new ThresholdTrigger('threads', 'above', [2])],
          actions: [rec],
          count: 5,
          cooldownMs: 200,
        },
      ],
      admit: (target, firing) => {
        refusals.push(`${target.rule}:${firing.tag}`);
        return refusals.length <= 2 ? 'over the limit' : undefined;
      },
    });
    await waitFor(() => rec.runs.length === 1, 10_000, 'a firing to be admitted');
    const suppressed = events.filter((e) => e.type === 'suppressed');
    expect(suppressed).toHaveLength(2);
    expect(suppressed[0]).toMatchObject({
      reason: 'over the limit',
      target: { pid: t.pid, rule: 'limited' },
    });
    expect(refusals.slice(0, 3)).toEqual(['limited:thread', 'limited:thread', 'limited:thread']);
    // Suppressed firings are not fired ones: the one that ran is the first 'fire'.
    expect(events.filter((e) => e.type === 'fire')).toHaveLength(1);
    stop();
  });

  it('dispatch runs actions for a process it does not track, through admit and with the same events', async () => {
    const rec = new Recording();
    let asked = 0;
    const { monitor, events, stop } = start({
      pollMs: 50,
      rules: [
        {
          name: 'idle',
          target: { match: () => false },
          triggers: [new ThresholdTrigger('cpu', 'above', [1])],
          actions: [],
        },
      ],
      admit: () => (++asked === 2 ? 'held back' : undefined),
    });
    const info = { pid: 4_000_000, startTime: Date.now(), name: 'crashed', rule: 'crashes' };
    const firing = {
      tag: 'crash' as const,
      met: true,
      value: 11,
      threshold: 0,
      reason: 'crashed with signal 11',
    };
    await monitor.dispatch(info, firing, [rec]);
    await monitor.dispatch(info, firing, [rec]);
    expect(rec.runs).toHaveLength(1);
    expect(rec.runs[0]!.target).toEqual(info);
    expect(events.filter((e) => e.type !== 'sweep' && e.type !== 'sample').map((e) => e.type)).toEqual([
      'fire',
      'action',
      'suppressed',
    ]);
    stop();
  });
});
