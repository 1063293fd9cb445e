// The command line on a real .NET target: ProcDump's .NET switches write runtime dumps with ProcDump's
// names and a sidecar, `dump --type`, `counters`, `sample --runtime`, and clear usage errors.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';

const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
const ok = dotnetAvailable();
const track = trackProcesses();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

function start(args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const child = track(spawn(process.execPath, [cli, ...args], { cwd: dir, env }));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

const files = () => readdirSync(dir).filter((f) => !f.startsWith('.'));

describe.runIf(ok)('tripdump on .NET targets', () => {
  it('-e -f writes a runtime dump named as ProcDump names it, with a sidecar saying who wrote it', async () => {
    const t = track(await startDotnetTarget());
    const history = path.join(dir, 'history');
    mkdirSync(history);
    const run = start(['-e', '-f', '*OrderFailed*', '--history', history, String(t.pid), dir]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 20_000, 'the settings block');
    expect(run.out()).toMatch(/Exception monitor:\s+On \(filter: \*OrderFailed\*\)/);
    // The session starts after the settings block: throw until the monitor has seen one (it then exits).
    let exited = false;
    void run.exit.then(() => {
      exited = true;
    });
    for (let i = 0; i < 40 && !exited; i++) {
      await t.send('throw InvalidOperationException ignored', 'thrown');
      await t.send('throw OrderFailedException cli order failed', 'thrown');
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(await run.exit).toBe(0);
    // A ProcDump command line writes the dump alone; the history goes where --history says.
    const dump = files().find((f) => f !== 'history')!;
    expect(files().sort()).toEqual([dump, 'history'].sort());
    expect(dump).toMatch(new RegExp(`^tripdump_fixture_exception_\\d{6}_\\d{6}\\.${t.pid}$`));
    expect(statSync(path.join(dir, dump)).mode & 0o777).toBe(0o600);
    expect(run.out()).toMatch(
      /Trigger: Exception Fixture\.OrderFailedException: cli order failed on process ID/,
    );
    expect(run.out()).toMatch(
      /Core dump 0 generated: .* \(\.NET runtime dump, type full, [\d.]+ MiB in [\d.]+ s\)/,
    );
    const side = JSON.parse(readFileSync(path.join(history, `${dump}.json`), 'utf8'));
    expect(side.trigger).toMatchObject({
      tag: 'exception',
      details: { type: 'Fixture.OrderFailedException', message: 'cli order failed' },
    });
    expect(side.dump).toMatchObject({ writer: 'dotnet', dotnetType: 'full', mode: 'stop' });
  });

  it('dump --type triage asks the runtime; with diagnostics disabled it falls back and says so', async () => {
    const t = track(await startDotnetTarget());
    const run = start(['dump', String(t.pid), path.join(dir, 'app.dmp'), '--type', 'triage', '--json']);
    expect(await run.exit).toBe(0);
    expect(JSON.parse(run.out())).toMatchObject({
      path: path.join(dir, 'app.dmp'),
      writer: 'dotnet',
      dotnetType: 'triage',
    });

    const off = track(await startDotnetTarget({ env: { ...process.env, DOTNET_EnableDiagnostics: '0' } }));
    const fb = start(['dump', String(off.pid), path.join(dir, 'off.core')]);
    expect(await fb.exit).toBe(0);
    expect(fb.out()).toContain('warning: the .NET runtime could not write the dump');
    expect(fb.out()).toContain('DOTNET_EnableDiagnostics=0');
    expect(fb.out()).toContain('written by the ptrace writer instead');
    expect(statSync(path.join(dir, 'off.core')).size).toBeGreaterThan(0);
  });

  it('counters prints EventCounters and Metrics instruments, as JSON lines or a table', async () => {
    const t = track(await startDotnetTarget());
    await t.send('gauge 7.5', 'gauge');
    const json = start([
      'counters',
      String(t.pid),
      '--providers',
      'System.Runtime,Tripdump.Fixture,Tripdump-Fixture',
      '--json',
      '--count',
      '2',
    ]);
    expect(await json.exit).toBe(0);
    const values = json
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { provider: string; name: string; value: number; kind: string });
    expect(values).toContainEqual(
      expect.objectContaining({ provider: 'System.Runtime', name: 'gc-heap-size', kind: 'mean' }),
    );
    expect(values).toContainEqual(
      expect.objectContaining({
        provider: 'Tripdump.Fixture',
        name: 'fixture.gauge',
        kind: 'gauge',
        value: 7.5,
      }),
    );
    expect(values).toContainEqual(
      expect.objectContaining({ provider: 'Tripdump-Fixture', name: 'fixture-gauge', value: 7.5 }),
    );
    const table = start(['counters', String(t.pid), '--count', '1']);
    expect(await table.exit).toBe(0);
    expect(table.out()).toMatch(/System\.Runtime:cpu-usage\s+[\d.e-]+ %/);
  });

  it('sample --runtime says which processes are .NET and their runtime version', async () => {
    const t = track(await startDotnetTarget());
    const plain = track(await spawnTarget('sampler_target'));
    const run = start([
      'sample',
      String(t.pid),
      String(plain.pid),
      '--runtime',
      '--json',
      '--interval',
      '100',
    ]);
    expect(await run.exit).toBe(0);
    const rows = run
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { pid: number; runtime: string; runtimeVersion: string | null });
    expect(rows.find((r) => r.pid === t.pid)).toMatchObject({
      runtime: 'dotnet',
      runtimeVersion: expect.stringMatching(/^\d+\.\d+\.\d+/),
    });
    expect(rows.find((r) => r.pid === plain.pid)).toMatchObject({ runtime: 'native', runtimeVersion: null });
  });

  it('says what is wrong with a .NET switch and starts nothing', async () => {
    const t = track(await startDotnetTarget());
    const plain = track(await spawnTarget('sampler_target'));
    const cases: [string[], RegExp][] = [
      [['-f', '*x*', String(t.pid)], /-f filters exceptions: use it with -e/],
      [['-pc', 'nocolon', '5', String(t.pid)], /-pc needs PROVIDER:COUNTER\[pNN\]/],
      [
        ['-pc', 'System.Runtime:cpu-usage', 'high', String(t.pid)],
        /-pc needs a number after the counter, got 'high'/,
      ],
      [['-gcm', 'gen7:10', String(t.pid)], /-gcm: unknown generation or heap 'gen7'/],
      [['-gcgen', '3', String(t.pid)], /-gcgen needs a generation 0, 1 or 2/],
      [
        ['-e', String(plain.pid)],
        /\.NET triggers need a \.NET process with diagnostics: process \d+: not a \.NET process/,
      ],
      [
        ['dump', String(t.pid), '--type', 'huge'],
        /--type must be one of normal, withheap, triage, full, got 'huge'/,
      ],
    ];
    for (const [args, message] of cases) {
      const run = start(args);
      expect(await run.exit, args.join(' ')).toBe(2);
      expect(run.err()).toMatch(message);
    }
    expect(files()).toEqual([]);
  });
});
