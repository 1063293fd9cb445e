// tripdump beside Microsoft's dotnet-counters on one .NET target (issue 19, defect 6): the runtime has one
// System.Diagnostics.Metrics aggregation per process, which .NET 8+ shares between clients that agree on
// its settings. `tripdump counters` and `dotnet-counters monitor` run side by side in both start orders
// and both see the Meter instrument's values; a monitor with other limits is joined on its limits; where
// the runtime cannot share (another interval, or `dotnet-counters collect`, which holds the session alone)
// tripdump fails clearly with exit 1 instead of silently dropping every Meter instrument.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { start } from '../e2e/run-cli.js';
import { dotnetTool } from '../fixtures/dotnet/build.js';
import { type DotnetTarget, dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { trackProcesses, waitFor } from '../helpers/processes.js';
import { requirement } from '../helpers/requirements.js';

const track = trackProcesses();
const counters = dotnetTool('dotnet-counters');
const ok =
  dotnetAvailable() &&
  requirement(counters !== undefined, 'dotnet-counters is not installed (test/global-setup.ts installs it)');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-coexist-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Tool {
  child: ChildProcess;
  /** Everything it printed, terminal escape sequences removed. */
  text(): string;
}

/** dotnet-counters with `args`, ended by the test (by pid). */
function dotnetCounters(args: string[]): Tool {
  const child = track(spawn(counters!, args, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] }));
  let raw = '';
  child.stdout!.on('data', (d: Buffer) => {
    raw += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    raw += d.toString();
  });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's escape sequences
  return { child, text: () => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n') };
}

/**
 * Waits until the monitor's screen shows the fixture's gauge with `value`: the first screen names the
 * gauge, later ones only rewrite its value cell, so the value is looked for as a cell of its own after
 * the gauge was named.
 */
function monitorShows(m: Tool, value: string): Promise<unknown> {
  return waitFor(
    () => {
      const text = m.text();
      const named = text.indexOf('fixture.gauge (units)');
      return named >= 0 && text.slice(named).split(/\s+/).includes(value);
    },
    30_000,
    `dotnet-counters monitor showing fixture.gauge ${value}`,
  );
}

interface Row {
  provider: string;
  name: string;
  value: number;
}

/** `tripdump counters PID --json` until Ctrl-C; rows() parses what it printed so far. */
function tripdumpCounters(pid: number, extra: string[] = []) {
  const run = start(['counters', String(pid), '--providers', 'Tripdump.Fixture', '--json', ...extra], {
    cwd: dir,
  });
  track(run.child);
  const rows = () =>
    run
      .out()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Row);
  const shows = (value: number) =>
    waitFor(
      () => rows().some((r) => r.name === 'fixture.gauge' && r.value === value),
      30_000,
      `tripdump counters showing fixture.gauge ${value}`,
    );
  return { run, rows, shows };
}

async function setGauge(t: DotnetTarget, value: string): Promise<void> {
  await t.send(`gauge ${value}`, 'gauge');
}

describe.runIf(ok)('tripdump counters beside dotnet-counters', () => {
  it('dotnet-counters monitor first, then tripdump: both read the Meter, and the monitor goes on after tripdump leaves', async () => {
    const t = track(await startDotnetTarget());
    await setGauge(t, '7.25');
    const monitor = dotnetCounters(['monitor', '-p', String(t.pid), '--counters', 'Tripdump.Fixture']);
    await monitorShows(monitor, '7.25');

    const td = tripdumpCounters(t.pid, ['--count', '2']);
    expect(await td.run.exit).toBe(0);
    expect(td.run.err()).toBe('');
    expect(td.rows()).toContainEqual(
      expect.objectContaining({ provider: 'Tripdump.Fixture', name: 'fixture.gauge', value: 7.25 }),
    );

    await setGauge(t, '8.5');
    await monitorShows(monitor, '8.5');
  });

  it('tripdump first, then dotnet-counters monitor: both read the Meter, and tripdump goes on after the monitor leaves', async () => {
    const t = track(await startDotnetTarget());
    await setGauge(t, '3.5');
    const td = tripdumpCounters(t.pid);
    await td.shows(3.5);

    const monitor = dotnetCounters(['monitor', '-p', String(t.pid), '--counters', 'Tripdump.Fixture']);
    await monitorShows(monitor, '3.5');
    await setGauge(t, '4.75');
    await Promise.all([monitorShows(monitor, '4.75'), td.shows(4.75)]);
    expect(monitor.text()).not.toMatch(/already in progress|not supported/i);

    monitor.child.kill('SIGKILL');
    await new Promise((r) => monitor.child.once('close', r));
    await setGauge(t, '5.5');
    await td.shows(5.5);
    td.run.child.kill('SIGINT');
    expect(await td.run.exit).toBe(0);
    expect(td.run.err()).toBe('');
  });

  it('a monitor with other limits is joined on its limits, for Meters it does not read itself', async () => {
    const t = track(await startDotnetTarget());
    await setGauge(t, '6.5');
    // The values of a shared session go to every client: only a Meter the monitor does not ask for shows
    // whether tripdump's own request was taken.
    const monitor = dotnetCounters([
      'monitor',
      '-p',
      String(t.pid),
      '--counters',
      'System.Runtime',
      '--maxHistograms',
      '25',
      '--maxTimeSeries',
      '900',
    ]);
    await waitFor(() => monitor.text().includes('dotnet.assembly.count'), 30_000, 'the monitor running');
    const td = tripdumpCounters(t.pid, ['--count', '2']);
    expect(await td.run.exit).toBe(0);
    expect(td.rows()).toContainEqual(expect.objectContaining({ name: 'fixture.gauge', value: 6.5 }));
    // The monitor goes on.
    const seen = monitor.text().length;
    await waitFor(() => monitor.text().length > seen, 30_000, 'the monitor refreshing after tripdump left');
    expect(monitor.text()).not.toMatch(/already in progress|not supported/i);
  });

  it('a monitor reading at another interval: tripdump says so and exits 1; at that interval it reads', async () => {
    const t = track(await startDotnetTarget());
    await setGauge(t, '1.5');
    const monitor = dotnetCounters([
      'monitor',
      '-p',
      String(t.pid),
      '--counters',
      'Tripdump.Fixture',
      '--refresh-interval',
      '2',
    ]);
    await monitorShows(monitor, '1.5');

    const refused = tripdumpCounters(t.pid, ['--count', '2']);
    expect(await refused.run.exit).toBe(1);
    expect(refused.run.err()).toContain('every 2 s');
    expect(refused.run.err()).toContain('tripdump asked for every 1 s');
    expect(refused.run.err()).not.toContain('MultipleSessions');

    const aligned = tripdumpCounters(t.pid, ['--count', '1', '--interval', '2']);
    expect(await aligned.run.exit).toBe(0);
    expect(aligned.rows()).toContainEqual(expect.objectContaining({ name: 'fixture.gauge', value: 1.5 }));
    await setGauge(t, '9.5');
    await monitorShows(monitor, '9.5');
  });

  it('dotnet-counters collect holds the Metrics session alone: tripdump says so and exits 1, not 0 without Meters', async () => {
    const t = track(await startDotnetTarget());
    await setGauge(t, '2.25');
    dotnetCounters([
      'collect',
      '-p',
      String(t.pid),
      '--counters',
      'Tripdump.Fixture',
      '-o',
      path.join(dir, 'collect.csv'),
    ]);
    // Its aggregation runs once the gauge's callback has been called.
    await waitFor(
      async () => Number((await t.send('observed', 'observed')).split(' ')[1]) > 0,
      30_000,
      "dotnet-counters collect's Metrics session",
      100,
    );
    const td = tripdumpCounters(t.pid, ['--count', '2']);
    expect(await td.run.exit).toBe(1);
    expect(td.run.err()).toContain('holds the System.Diagnostics.Metrics session of this process for itself');
    expect(td.run.err()).toContain('dotnet-counters collect');
    expect(td.rows()).toEqual([]);

    // A -pc trigger on the Meter would never fire: it says so and the monitor exits 1.
    const pc = start(['-pc', 'Tripdump.Fixture:fixture.gauge', '5', '-n', '1', String(t.pid), dir], {
      cwd: dir,
    });
    track(pc.child);
    expect(await pc.exit).toBe(1);
    expect(pc.out() + pc.err()).toContain(
      'holds the System.Diagnostics.Metrics session of this process for itself',
    );
  });
});
