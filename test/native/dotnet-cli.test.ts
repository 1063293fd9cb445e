// The command line on a real .NET target: ProcDump's .NET switches write runtime dumps with ProcDump's
// names and a sidecar, `dump --type`, `counters`, `sample --runtime`, and clear usage errors.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dotnetTool } from '../fixtures/dotnet/build.js';
import { dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';
import { requirement } from '../helpers/requirements.js';

const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
const ok = dotnetAvailable();
const track = trackProcesses();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dotnet-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** dotnet-dump analyze's answers to SOS commands on a core. */
function analyze(file: string, ...commands: string[]): string {
  const r = spawnSync(
    dotnetTool('dotnet-dump')!,
    ['analyze', file, ...commands.flatMap((c) => ['-c', c]), '-c', 'exit'],
    { encoding: 'utf8', timeout: 120_000 },
  );
  return `${r.stdout}${r.stderr}`;
}

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

/** The time in the names ProcDump's .NET profiler gives: YYYY-MM-DD_HH_MM_SS. */
const PROFILER_TIME = '\\d{4}-\\d{2}-\\d{2}_\\d{2}_\\d{2}_\\d{2}';
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Repeats `poke` (a command to the target) until `done()` holds, waiting up to roundMs for it after each:
 * the monitor's session may start after its settings block, so a single event could come before it.
 */
async function pokeUntil(poke: () => Promise<unknown>, done: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 40 && !done(); round++) {
    await poke();
    await waitFor(done, 1_500, what).catch(() => {});
  }
  if (!done()) throw new Error(`40 rounds and still not ${what}`);
}

/** Resolves `exited()` true once the run has ended. */
function exitFlag(run: Run): () => boolean {
  let exited = false;
  void run.exit.then(() => {
    exited = true;
  });
  return () => exited;
}

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
    // ProcDump's profiler's name: the first exception dump (N = 0), its type, the time, no pid.
    expect(dump).toMatch(new RegExp(`^tripdump-fixture_0_Fixture\\.OrderFailedException_${PROFILER_TIME}$`));
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

  it('-e --type: runtime dumps of that type, named <name>_<N>_<exception type>_<time> with no pid', async () => {
    const t = track(await startDotnetTarget());
    const run = start(['-e', '-n', '2', '-s', '0', '--type', 'triage', String(t.pid), dir]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 20_000, 'the settings block');
    // The settings block says what writes the dumps, not "snapshot".
    expect(run.out()).toMatch(
      /\nDump Mode:\s+\.NET runtime dump of type triage over the diagnostics socket, the process suspended while it is written\n/,
    );
    const fired = () => [...run.out().matchAll(/Trigger: Exception (\S+): /g)].map((m) => m[1]!);
    await pokeUntil(
      () => t.send('throw InvalidOperationException first', 'thrown'),
      () => fired().length > 0,
      'an exception dump',
    );
    const exited = exitFlag(run);
    await pokeUntil(() => t.send('throw OrderFailedException second', 'thrown'), exited, 'two dumps');
    expect(await run.exit).toBe(0);
    const types = fired();
    expect(types[0]).toBe('System.InvalidOperationException');
    expect(types).toHaveLength(2);
    // N counts this process's exception dumps from 0; the type is the thrown one; nothing else is written.
    const names = files().sort((a, b) => a.split('_')[1]!.localeCompare(b.split('_')[1]!));
    expect(names).toHaveLength(2);
    for (const [n, name] of names.entries()) {
      expect(name).toMatch(new RegExp(`^tripdump-fixture_${n}_${literal(types[n]!)}_${PROFILER_TIME}$`));
      expect(run.out()).toMatch(
        new RegExp(
          `Core dump ${n} generated: ${literal(path.join(dir, name))} \\(\\.NET runtime dump, type triage, `,
        ),
      );
    }
  });

  it("-gcm, -gcgen and -pc dumps get ProcDump names: N the threshold, 1/2 for a collection's start/end", async () => {
    const t = track(await startDotnetTarget());
    // -gcm: one dump per threshold, N = the threshold reached (from 1).
    const gcm = start(['-gcm', '20,40', '-s', '0', '--type', 'triage', String(t.pid), dir]);
    await waitFor(() => gcm.out().includes('Press Ctrl-C'), 20_000, 'the settings block');
    await t.send('alloc 25', 'allocated');
    await pokeUntil(
      () => t.send('gc 0', 'collected'),
      () => gcm.out().includes('Core dump 0 generated'),
      'the 20 MB dump',
    );
    await t.send('alloc 20', 'allocated');
    await pokeUntil(() => t.send('gc 0', 'collected'), exitFlag(gcm), 'the 40 MB dump');
    expect(await gcm.exit).toBe(0);
    const sizeNames = files().sort();
    expect(sizeNames).toHaveLength(2);
    expect(sizeNames[0]).toMatch(new RegExp(`^tripdump-fixture_1_gc_size_${PROFILER_TIME}$`));
    expect(sizeNames[1]).toMatch(new RegExp(`^tripdump-fixture_2_gc_size_${PROFILER_TIME}$`));

    // -gcgen with a DUMP_FILE: ProcDump's <file>_<N>, 1 at the collection's start, 2 at its end.
    const sub = path.join(dir, 'gcgen');
    mkdirSync(sub);
    const gen = start(['-gcgen', '2', '--type', 'triage', String(t.pid), path.join(sub, 'app.dmp')]);
    await waitFor(() => gen.out().includes('Press Ctrl-C'), 20_000, 'the settings block');
    await pokeUntil(() => t.send('gc 2', 'collected'), exitFlag(gen), 'two -gcgen dumps');
    expect(await gen.exit).toBe(0);
    expect(readdirSync(sub).sort()).toEqual(['app.dmp_1', 'app.dmp_2']);

    // -pc: ProcDump's writer names a runtime's dump <name>_<trigger>_<yymmdd_HHMMSS>, without the pid.
    const pcDir = path.join(dir, 'pc');
    mkdirSync(pcDir);
    await t.send('gauge 100', 'gauge');
    const pc = start([
      '-pc',
      'Tripdump.Fixture:fixture.gauge',
      '50',
      '--type',
      'triage',
      String(t.pid),
      pcDir,
    ]);
    expect(await pc.exit).toBe(0);
    expect(readdirSync(pcDir)).toEqual([expect.stringMatching(/^tripdump_fixture_perfcounter_\d{6}_\d{6}$/)]);
  });

  it('a .NET process without diagnostics gets a core SOS loads; the settings block says which writer', async () => {
    const off = track(await startDotnetTarget({ env: { ...process.env, DOTNET_EnableDiagnostics: '0' } }));
    await off.send('alloc 10', 'allocated');
    const own = Number.parseInt(readFileSync(`/proc/${off.pid}/coredump_filter`, 'latin1'), 16);
    const sos = `0x${(own | 0xf).toString(16)}`;
    // The monitor says, before anything fires, that the core writer will write it and with which filter.
    const mon = start(['-c', '0', '-n', '1', String(off.pid), dir]);
    expect(await mon.exit).toBe(0);
    expect(mon.out()).toMatch(
      new RegExp(
        `\\nDump Mode:\\s+snapshot, core writer \\(\\.NET diagnostics disabled\\), coredump_filter ${sos}\\n`,
      ),
    );
    expect(mon.out()).toContain(`coredump_filter ${sos} (with the mappings SOS needs)`);
    const core = files().find((f) => /_cpu_/.test(f))!;
    expect(core).toMatch(new RegExp(`^tripdump_fixture_cpu_\\d{6}_\\d{6}\\.${off.pid}$`));
    // `dump` names it as a ptrace core: nothing says "full" about a file the runtime did not write.
    const manual = start(['dump', String(off.pid), `${dir}/`, '--type', 'withheap']);
    expect(await manual.exit).toBe(0);
    const manualCore = files().find((f) => /_manual_/.test(f))!;
    expect(manualCore).toMatch(new RegExp(`^tripdump_fixture_manual_\\d{6}_\\d{6}\\.${off.pid}$`));
    // The kernel's default filter (0x33) as --filter: SOS finds no runtime in that core.
    const plain = start(['dump', String(off.pid), path.join(dir, 'plain.core'), '--filter', '0x33']);
    expect(await plain.exit).toBe(0);
    if (!requirement(dotnetTool('dotnet-dump') !== undefined, 'dotnet-dump is not installed')) return;
    for (const f of [core, manualCore]) {
      const out = analyze(path.join(dir, f), 'clrstack -all', 'dumpheap -stat');
      expect(out, f).not.toContain('No CLR runtime found');
      expect(out, f).toContain('Fixture.Worker.Park()');
      expect(out, f).toMatch(/Total [\d,]+ objects/);
    }
    expect(analyze(path.join(dir, 'plain.core'), 'dumpheap -stat')).toContain('No CLR runtime found');
  });

  it('dump PID DIR names a runtime dump by its type', async () => {
    const t = track(await startDotnetTarget());
    const run = start(['dump', String(t.pid), `${dir}/`, '--type', 'triage']);
    expect(await run.exit).toBe(0);
    expect(files()).toEqual([
      expect.stringMatching(new RegExp(`^tripdump_fixture_triage_\\d{6}_\\d{6}\\.${t.pid}$`)),
    ]);
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
      // The monitor's --type: the same values and message as dump's.
      [
        ['-e', '--type', 'huge', String(t.pid)],
        /--type must be one of normal, withheap, triage, full, got 'huge'/,
      ],
      [
        ['--type', 'mini', '-c', '90', String(t.pid)],
        /--type must be one of normal, withheap, triage, full, got 'mini'/,
      ],
      [['-e', '--type', String(t.pid)], new RegExp(`--type must be one of .*, got '${t.pid}'`)],
      [
        ['--type', 'triage', '-c', '90', String(plain.pid)],
        /--type chooses what a \.NET runtime writes: process \d+: not a \.NET process/,
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
