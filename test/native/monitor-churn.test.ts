// The monitor's per-target lifecycle under churn: thousands of matching processes come and go (renamed
// after fork, re-exec'd, multi-threaded, many gone before the monitor can add them); the monitor never
// stops over one that vanishes while it is being added, and what it holds returns to the live ones.
import { afterEach, describe, expect, it } from 'vitest';
import { Monitor, SignalTrigger, ThresholdTrigger } from '../../src/index.js';
import { spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';

const track = trackProcesses();
const aborts: AbortController[] = [];
afterEach(() => {
  for (const ac of aborts.splice(0)) ac.abort();
});

/** A name no other test's processes have: comm is at most 15 bytes. */
const uniqueName = (tag: string) => `td${tag}${process.pid % 100_000}`.slice(0, 15);

async function churnAndSettle(opts: {
  sleepers: number;
  total: number;
  rate: number;
  lifeMs: number;
  trigger: ThresholdTrigger | SignalTrigger;
  tag: string;
}): Promise<void> {
  const name = uniqueName(opts.tag);
  const ac = new AbortController();
  aborts.push(ac);
  let added = 0;
  let exits = 0;
  const errors: string[] = [];
  const monitor = new Monitor({
    target: { name },
    triggers: [opts.trigger],
    actions: [],
    pollMs: 20,
    signal: ac.signal,
  }).on((e) => {
    if (e.type === 'target') added++;
    else if (e.type === 'exit') exits++;
    if (e.type === 'error') errors.push(`${e.target.pid}: ${e.error.message}`);
  });
  let ended: string | undefined;
  const run = monitor.run().then(
    (s) => {
      ended = `ended: ${s.reason}`;
      return s;
    },
    (e: unknown) => {
      ended = `threw: ${(e as Error).message}`;
      throw e;
    },
  );
  expect(monitor.tracked).toBe(0);
  const churn = track(
    await spawnTarget(
      'churn',
      [
        '--name',
        name,
        '--sleepers',
        String(opts.sleepers),
        '--total',
        String(opts.total),
        '--rate',
        String(opts.rate),
        '--life-ms',
        String(opts.lifeMs),
      ],
      { stdin: true },
    ),
  );
  // The baseline: the sleepers, each added once it has its name; then the churn starts.
  await waitFor(() => monitor.tracked === opts.sleepers || ended, 10_000, 'the sleepers to be added');
  expect(ended).toBeUndefined();
  churn.child.stdin!.write('go\n');
  await waitFor(() => churn.lines.includes('done') || ended, 120_000, 'the churn to end');
  // Every short-lived child has been reaped: the monitor is back to the sleepers once it has swept.
  await waitFor(() => monitor.tracked === opts.sleepers || ended, 10_000, 'the monitor to settle');
  // The errors first: when the monitor ended early, they say why.
  expect(errors).toEqual([]);
  expect(ended).toBeUndefined();
  expect(monitor.tracked).toBe(opts.sleepers);
  // It did see the churn (how much of it depends on the host's load: many live less than a poll), and
  // saw each one it added go.
  expect(added).toBeGreaterThan(opts.total / 10);
  expect(added - exits).toBe(opts.sleepers);
  ac.abort();
  expect((await run).reason).toBe('aborted');
}

describe('Monitor under churn', () => {
  it('forgets every process that exits: 2,000 come and go, its state returns to the 20 that live', async () => {
    await churnAndSettle({
      sleepers: 20,
      total: 2000,
      rate: 300,
      lifeMs: 100,
      // Never met: the targets are only watched, which is what churn costs most.
      trigger: new ThresholdTrigger('memory', 'above', [1_000_000]),
      tag: 'churn',
    });
  }, 180_000);

  it('an event-driven trigger attaching to a process that exits meanwhile is that exit, not a failure', async () => {
    // Each target gets a ptrace watcher as it is added; many children are gone by then, or mid-exit.
    await churnAndSettle({
      sleepers: 3,
      total: 150,
      rate: 30,
      lifeMs: 300,
      trigger: new SignalTrigger(['SIGUSR2']),
      tag: 'sig',
    });
  }, 180_000);
});
