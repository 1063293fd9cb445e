// The agent's retry of a rule's event-driven trigger, as logic: the backoff doubles up to its cap, a
// process that is gone is not retried, the report says when the failure is over, and everything but
// subscribe() is the trigger's own. (End to end, with a real Node inspector closed under the agent:
// test/e2e/agent.test.ts.)
import { describe, expect, it } from 'vitest';
import { retrying } from '../../src/agent/retry.js';
import { ProcessGoneError } from '../../src/errors.js';
import type { Trigger } from '../../src/triggers/trigger.js';

/** A trigger whose subscribe() plays the given outcomes in turn, then watches until aborted. */
function scripted(outcomes: (Error | 'ok')[]): Trigger & { calls: number } {
  const t = {
    calls: 0,
    tag: 'heapused' as const,
    fields: [],
    setting: ['Heap Used Threshold:', '>= 1 MB'] as const,
    limit: () => 7,
    describe: () => 'described',
    judge: () => ({ met: true, value: 2, threshold: 1 }),
    subscribe(_pid: number, _fire: unknown, signal: AbortSignal): Promise<void> {
      const outcome = outcomes[t.calls++];
      if (outcome instanceof Error) return Promise.reject(outcome);
      if (outcome === 'ok') return Promise.resolve();
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    },
  };
  return t;
}

const backoff = { firstMs: 5, maxMs: 20, healthyMs: 10_000 };

describe('retrying', () => {
  it('retries a failing subscribe with a doubling wait up to the cap, and says when the failure is over', async () => {
    const inner = scripted([new Error('a'), new Error('b'), new Error('c'), new Error('d'), 'ok']);
    const failed: [number, string, number, number][] = [];
    const recovered: number[] = [];
    const t = retrying(
      inner,
      {
        failed: (pid, _tag, e, attempt, wait) => failed.push([pid, e.message, attempt, wait]),
        recovered: (pid) => recovered.push(pid),
      },
      backoff,
    );
    await t.subscribe!(
      42,
      async () => true,
      new AbortController().signal,
      () => {},
    );
    expect(failed).toEqual([
      [42, 'a', 1, 5],
      [42, 'b', 2, 10],
      [42, 'c', 3, 20],
      [42, 'd', 4, 20],
    ]);
    expect(inner.calls).toBe(5);
    expect(recovered).toEqual([42]);
    // The rest is the trigger's own.
    expect(t.judge!({ pid: 42 } as never, { fired: 0 })).toEqual({ met: true, value: 2, threshold: 1 });
    expect([
      t.tag,
      t.setting,
      t.limit({ fired: 0 }),
      t.describe({ met: true, value: 1, threshold: 1 }),
    ]).toEqual(['heapused', inner.setting, 7, 'described']);
  });

  it('does not retry a process that is gone, and stops when the watch is aborted', async () => {
    const gone = new ProcessGoneError({ errno: -3, code: 'ESRCH', syscall: 'open', pid: 42 });
    const report = { failed: () => {}, recovered: () => {} };
    await expect(
      retrying(scripted([gone]), report, backoff).subscribe!(
        42,
        async () => true,
        new AbortController().signal,
        () => {},
      ),
    ).rejects.toBe(gone);

    const ctl = new AbortController();
    const inner = scripted([new Error('a')]);
    const watching = retrying(
      inner,
      { failed: () => ctl.abort(), recovered: () => {} },
      { ...backoff, firstMs: 60_000 },
    ).subscribe!(
      42,
      async () => true,
      ctl.signal,
      () => {},
    );
    await watching; // aborted during its wait: no second attempt
    expect(inner.calls).toBe(1);
  });

  it('leaves a trigger without subscribe() as it is', () => {
    const { subscribe: _, ...polled } = scripted([]);
    const t = polled as Trigger;
    expect(retrying(t, { failed: () => {}, recovered: () => {} })).toBe(t);
  });
});
