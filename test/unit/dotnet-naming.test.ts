// ProcDump 3.x's names for the dumps of its .NET triggers (its profiler's for -e/-gcm/-gcgen, its writer's
// for -pc), the numbering the dump action keeps per process, the monitor's --type and Dump Mode line, and
// counted nouns.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DumpAction } from '../../src/actions/dump.js';
import type { Rule } from '../../src/agent/config.js';
import { Limiter } from '../../src/agent/limits.js';
import { dumpModeSetting } from '../../src/cli/dotnet-switches.js';
import { parseProcdumpArgs } from '../../src/cli/procdump.js';
import type { CoreDumpResult } from '../../src/dump/core.js';
import {
  dotnetDumpPath,
  dumpPath,
  exceptionLabel,
  NAME_MAX,
  profilerProcessName,
  profilerTimestamp,
} from '../../src/dump/naming.js';
import { plural } from '../../src/plural.js';
import type { DumpFn, Firing, TriggerTag } from '../../src/triggers/trigger.js';
import { trackProcesses, waitFor } from '../helpers/processes.js';

const track = trackProcesses();

// 15 January 2026, 10:30:45 local time (ProcDump names dumps in local time).
const when = new Date(2026, 0, 15, 10, 30, 45);
const out = { dir: '/d' };

describe('dotnetDumpPath', () => {
  it("names -e, -gcm and -gcgen dumps as ProcDump 3.x's profiler: <name>_<N>_<what>_<YYYY-MM-DD_HH_MM_SS>", () => {
    expect(profilerTimestamp(when)).toBe('2026-01-15_10_30_45');
    expect(
      dotnetDumpPath(out, 'TestWebApi', { ordinal: 0, label: 'System.InvalidOperationException' }, when, 0),
    ).toBe('/d/TestWebApi_0_System.InvalidOperationException_2026-01-15_10_30_45');
    expect(dotnetDumpPath(out, 'TestWebApi', { ordinal: 2, label: 'gc_size' }, when, 0)).toBe(
      '/d/TestWebApi_2_gc_size_2026-01-15_10_30_45',
    );
    // A name one run would reuse gets a counter at the end (there is no pid to put it before).
    expect(dotnetDumpPath(out, 'app', { ordinal: 1, label: 'gc_gen' }, when, 1)).toBe(
      '/d/app_1_gc_gen_2026-01-15_10_30_45_1',
    );
  });

  it('with a DUMP_FILE: <file>_<N> for the profiler, <file> for the writer, counter after', () => {
    const custom = { dir: '/d', file: 'app.dmp' };
    expect(dotnetDumpPath(custom, 'x', { ordinal: 0, label: 'System.Exception' }, when, 0)).toBe(
      '/d/app.dmp_0',
    );
    expect(dotnetDumpPath(custom, 'x', { tag: 'perfcounter' }, when, 0)).toBe('/d/app.dmp');
    expect(dotnetDumpPath(custom, 'x', { tag: 'perfcounter' }, when, 2)).toBe('/d/app.dmp_2');
  });

  it("names -pc dumps as ProcDump's writer names a runtime dump: <name>_perfcounter_<yymmdd_HHMMSS>, no pid", () => {
    expect(dotnetDumpPath(out, 'my_app', { tag: 'perfcounter' }, when, 0)).toBe(
      '/d/my_app_perfcounter_260115_103045',
    );
    // Every other dump keeps its pid.
    expect(dumpPath(out, 'my_app', 'cpu', 42, when, 0)).toBe('/d/my_app_cpu_260115_103045.42');
  });

  it('cuts the process name, then the label, to fit NAME_MAX; N and the time stay whole', () => {
    const long = 'n'.repeat(300);
    const a = path.basename(dotnetDumpPath(out, long, { ordinal: 7, label: 'gc_size' }, when, 3));
    expect(Buffer.byteLength(a)).toBe(NAME_MAX);
    expect(a.endsWith('_7_gc_size_2026-01-15_10_30_45_3')).toBe(true);
    const b = path.basename(
      dotnetDumpPath(out, long, { ordinal: 12, label: `Ns.${'é'.repeat(300)}` }, when, 0),
    );
    expect(Buffer.byteLength(b)).toBeLessThanOrEqual(NAME_MAX);
    expect(b).toMatch(/^n{16}_12_Ns\.é+_2026-01-15_10_30_45$/);
  });
});

describe('exceptionLabel', () => {
  it("is the type's own name, as the profiler reads it from metadata", () => {
    expect(exceptionLabel('System.InvalidOperationException')).toBe('System.InvalidOperationException');
    expect(exceptionLabel('Fixture.Outer+InnerException')).toBe('InnerException');
    expect(exceptionLabel('Ns.Failure`1[System.Int32]')).toBe('Ns.Failure`1');
    expect(exceptionLabel('Ns.Failure`2[[System.Int32, System.Private.CoreLib],[A, B]]')).toBe(
      'Ns.Failure`2',
    );
  });
  it('never holds a path separator, a glob character, a control or bidi character', () => {
    expect(exceptionLabel('../../etc/passwd')).toBe('.._.._etc_passwd');
    expect(exceptionLabel('Evil*?Name\nx\u202Eexe.')).toBe('Evil__Name_x_exe.');
    expect(exceptionLabel('')).toBe('Exception');
  });
  it("names a process as the profiler does: argv[0]'s basename, unsanitized but for control characters", async () => {
    const named = (argv0: string) => track(spawn('sleep', ['60'], { argv0, stdio: 'ignore' }));
    const plain = named('/opt/my-app.v2');
    const evil = named('evil\u202Ename\x01x');
    await waitFor(
      () => readFileSync(`/proc/${evil.pid}/cmdline`, 'latin1').startsWith('evil'),
      5_000,
      'exec',
    );
    await waitFor(
      () => readFileSync(`/proc/${plain.pid}/cmdline`, 'latin1').startsWith('/opt'),
      5_000,
      'exec',
    );
    expect(profilerProcessName(plain.pid!)).toBe('my-app.v2');
    expect(profilerProcessName(evil.pid!)).toBe('evil_name_x');
  });
});

describe('DumpAction with ProcDump names', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tripdump-naming-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A writer that writes a small file where it is told: the names are what is tested here. */
  const write: DumpFn = async (file) => {
    writeFileSync(file, 'core', { flag: 'wx', mode: 0o600 });
    return {
      path: file,
      bytesWritten: 4,
      bytesOnDisk: 4,
      threads: 1,
      mappingsWritten: 0,
      mappingsSkipped: 0,
      pauseMs: 0,
      pausePhases: [],
      mode: 'stop',
      warnings: [],
    } satisfies CoreDumpResult;
  };
  const fireAt = (
    action: DumpAction,
    tag: TriggerTag,
    details: Record<string, unknown>,
    target = { pid: process.pid, startTime: 1, name: 'node_app' },
  ) => {
    const firing: Firing = { met: true, value: 1, threshold: 1, tag, reason: tag, details, dump: write };
    return action.run({
      target,
      firing,
      time: when,
      history: [],
      signal: new AbortController().signal,
      written: new Map(),
    });
  };

  it('numbers per process: exceptions from 0, thresholds from 1, a collection 1 then 2', async () => {
    const a = new DumpAction({ dir, procdumpDotnetNames: true });
    const target = track(spawn('sleep', ['60'], { argv0: 'Test-Web.Api', stdio: 'ignore' }));
    await waitFor(
      () => readFileSync(`/proc/${target.pid}/cmdline`, 'latin1').startsWith('Test'),
      5_000,
      'exec',
    );
    const me = 'Test-Web.Api';
    const fire = (tag: TriggerTag, details: Record<string, unknown>, startTime = 1) =>
      fireAt(a, tag, details, { pid: target.pid!, startTime, name: 'Test_Web_Api' });
    await fire('exception', { type: 'System.InvalidOperationException' });
    await fire('exception', { type: 'Fixture.OrderFailedException' });
    await fire('gc_size', { heapBytes: {} });
    await fire('gc_size', { heapBytes: {} });
    await fire('gc_gen', { phase: 'start' });
    await fire('gc_gen', { phase: 'end' });
    await fire('perfcounter', { counter: 'x' });
    await fire('perfcounter', { counter: 'x' });
    // Another process (same pid, another start time: a reused pid) starts from 0 again.
    await fire('exception', { type: 'System.Exception' }, 2);
    const t = '2026-01-15_10_30_45';
    expect(readdirSync(dir).sort()).toEqual(
      [
        `${me}_0_System.InvalidOperationException_${t}`,
        `${me}_1_Fixture.OrderFailedException_${t}`,
        `${me}_1_gc_size_${t}`,
        `${me}_2_gc_size_${t}`,
        `${me}_1_gc_gen_${t}`,
        `${me}_2_gc_gen_${t}`,
        `${me}_0_System.Exception_${t}`,
        'Test_Web_Api_perfcounter_260115_103045',
        'Test_Web_Api_perfcounter_260115_103045_1',
      ].sort(),
    );
  });

  it('keeps <name>_<trigger>_<time>.<pid> without them (the agent), and for other triggers', async () => {
    const agent = new DumpAction({ dir });
    await fireAt(agent, 'exception', { type: 'System.Exception' });
    const procdump = new DumpAction({ dir, procdumpDotnetNames: true });
    await fireAt(procdump, 'cpu', {});
    expect(readdirSync(dir).sort()).toEqual(
      [`node_app_cpu_260115_103045.${process.pid}`, `node_app_exception_260115_103045.${process.pid}`].sort(),
    );
  });
});

describe('the monitor command line', () => {
  it("--type takes the agent's and dump's values, case-insensitive, and says which ones when wrong", () => {
    expect(parseProcdumpArgs(['--type', 'Triage', '-w', 'app'])?.dotnetType).toBe('triage');
    expect(parseProcdumpArgs(['/type', 'withheap', '-w', 'app'])?.dotnetType).toBe('withheap');
    expect(parseProcdumpArgs(['-w', 'app'])?.dotnetType).toBeUndefined();
    expect(() => parseProcdumpArgs(['--type', 'heap', '-w', 'app'])).toThrow(
      "--type must be one of normal, withheap, triage, full, got 'heap'",
    );
    expect(() => parseProcdumpArgs(['-usegcore', '--type', 'full', '-w', 'app'])).toThrow(
      /-usegcore cannot be used with --type: gcore writes every dump/,
    );
  });

  it('Dump Mode says what will write the dumps', () => {
    const c = { gcore: false, mode: undefined, dotnetType: undefined };
    expect(dumpModeSetting(c, { kind: 'core' })).toBe('snapshot');
    expect(dumpModeSetting({ ...c, mode: 'stop' }, { kind: 'core' })).toBe('stop');
    expect(dumpModeSetting({ ...c, mode: 'stop', dotnetType: 'triage' }, { kind: 'runtime' })).toBe(
      '.NET runtime dump of type triage over the diagnostics socket, the process suspended while it is written',
    );
    expect(dumpModeSetting(c, { kind: 'dotnet-core', why: '.NET diagnostics disabled', filter: 0x3f })).toBe(
      'snapshot, core writer (.NET diagnostics disabled), coredump_filter 0x3f',
    );
    expect(dumpModeSetting(c, undefined)).toBe(
      'snapshot; a .NET process: .NET runtime dump of type full over the diagnostics socket, the process suspended while it is written',
    );
    expect(dumpModeSetting({ ...c, gcore: true }, { kind: 'runtime' })).toBe('gcore (stop)');
    expect(dumpModeSetting({ ...c, filter: 0x33 }, { kind: 'runtime' })).toMatch(
      /while it is written \(-mc does not apply to it\)$/,
    );
  });
});

describe('counted nouns', () => {
  it('are singular for exactly one', () => {
    expect([0, 1, 2].map((n) => plural(n, 'rule'))).toEqual(['0 rules', '1 rule', '2 rules']);
    expect(plural(1, 'process', 'processes')).toBe('1 process');
    expect(plural(3, 'process', 'processes')).toBe('3 processes');
  });

  it('"fired 1 time" in the agent\'s limit message', () => {
    const l = new Limiter(
      { windowMs: 60_000, minFree: { bytes: 0 } },
      () => 1000,
      () => ({ free: 1, total: 1 }),
    );
    const rule: Rule = {
      name: 'r',
      match: { comm: ['x'] },
      trigger: { cpu: 1, forMs: 0, cooldownMs: 0, count: 1 },
      actions: [],
      limit: { count: 1, windowMs: 60_000 },
    };
    expect(l.admit(rule, [], 0)).toBeUndefined();
    expect(l.admit(rule, [], 0)?.message).toContain('already fired 1 time in the last 60 s');
  });
});
