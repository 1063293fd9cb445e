// ProcDump for Linux 3.x's command line: `tripdump [options] {[-w] NAME | [-pgid] PGID | PID} [DUMP_FILE |
// DUMP_DIR]`, same switches and meaning, case-insensitive, `-` or `/`, with its mistakes fixed (README).
//
// Every switch is one row of SWITCHES: how many values follow it, which others it excludes, and what it
// does to the configuration being built (a trigger switch pushes its Trigger). To add a switch, add a row
// (and its line in PROCDUMP_USAGE); a switch of ProcDump's that tripdump does not have yet is a row made
// with notYet(), so it is refused with a message naming it instead of being taken for a process name.

import { accessSync, constants } from 'node:fs';
import { cpus } from 'node:os';
import type { DumpMode } from '../dump/core.js';
import { UsageError } from '../errors.js';
import type { TargetSpec } from '../monitor/monitor.js';
import { type DotnetDumpType, parseDumpType } from '../runtimes/dotnet/dump.js';
import { checkPid } from '../sampler/sampler.js';
import { SignalTrigger } from '../triggers/signal.js';
import { KINDS, type ThresholdKind, ThresholdTrigger, TimerTrigger } from '../triggers/threshold.js';
import type { Trigger } from '../triggers/trigger.js';
import { parseInteger, parseMask, parseNumber, RANGE, refusePadding } from './common.js';
import {
  checkDotnetTarget,
  DOTNET_SWITCHES,
  DOTNET_USAGE,
  type DumpWriterKind,
  dumpModeSetting,
  finishDotnetSwitches,
  isDotnetTrigger,
} from './dotnet-switches.js';
import { outputTarget } from './dump.js';
import { escapeControl } from './format.js';
import {
  checkNodeTarget,
  finishNodeSwitches,
  isNodeTrigger,
  NODE_SWITCHES,
  NODE_USAGE_LINES,
  type NodeBuilding,
  type NodeConfig,
} from './node-switches.js';

/** -c / -cl: CPU can reach 100 % per CPU, no more. */
const MAX_CPU = 100 * Math.max(1, cpus().length);
/** ProcDump's MAX_DUMP_COUNT. */
export const MAX_DUMPS = 100;
const MAX_MB = 16_777_216; // 16 TiB
const MAX_THREADS = 4_194_304; // PID_MAX_LIMIT: no process has more threads
const MAX_FDS = 1_073_741_816; // the largest fs.nr_open

export const PROCDUMP_USAGE = `Usage: tripdump [options] {PID | [-w] NAME | [-pgid] PGID} [DUMP_FILE | DUMP_DIR]

Monitors a process and writes core dumps when a trigger fires (ProcDump for Linux 3.x's options).
Switches are case-insensitive and may start with - or /; each may be given once.

Target:
  PID           the process to monitor
  NAME          the one running process of that name (argv[0]'s basename or comm)
  -w NAME       wait for processes named NAME and monitor every instance (also: -w ... NAME)
  -pgid PGID    monitor every member of process group PGID, including later ones (also: -pgid ... PGID)
Output (default: the current folder):
  DUMP_DIR      an existing folder (a path ending in / must be one); dumps get ProcDump's names,
                <name>_<trigger>_<yymmdd_HHMMSS>.<pid>
  DUMP_FILE     a custom name in an existing folder: NAME.<pid>, then NAME_1.<pid>... (not with -w/-pgid)

Triggers (several run at once and share the dump count; none: a dump every -s seconds):
  -c N          CPU at or above N percent of one core, over the last polling interval (0 to ${MAX_CPU},
                100 per CPU)
  -cl N         CPU below N percent (same range)
  -m MB[,MB..]  resident memory (RSS; ProcDump calls it commit) at or above each threshold in turn
                (0 to ${MAX_MB.toLocaleString('en-US')} MB each)
  -ml MB[,MB..] resident memory below each threshold in turn
  -tc N         thread count at or above N (0 to ${MAX_THREADS.toLocaleString('en-US')})
  -fc N         open file descriptors at or above N (0 to ${MAX_FDS.toLocaleString('en-US')})
  -so N         open sockets at or above N (0 to ${MAX_FDS.toLocaleString('en-US')})
  -sig N[,N..]  the process receives one of these signals (numbers or names): it is dumped right before
                delivery, then the signal is delivered as if nothing happened (alone, without -pf)
${DOTNET_USAGE}${NODE_USAGE_LINES}Options:
  -n COUNT      dumps to write per process, then exit (1 to ${MAX_DUMPS}; default 1, or the number of
                -m/-ml thresholds, which cannot be combined with -n)
  -s SECONDS    quiet time after each dump (0 to 86,400; default 10)
  -pf MS        polling interval in milliseconds (1 to 86,400,000; default 1000)
  --for SECONDS the condition must hold this long before a dump (0 to 86,400; default 0)
  -o            overwrite existing dump files (a regular file only, never a symlink); without it an
                existing name is not overwritten: "already exists", nothing written
  -mc HEX       coredump_filter mask for the dumps (0 to 0x1ff, as 33 or 0x33)
  --mode M      snapshot (default: the target pauses for milliseconds) or stop
  --type T      a .NET process is dumped by its own runtime over its diagnostics socket (the process
                suspended while it is written, whatever --mode says): normal, withheap, triage or
                full (default full); with diagnostics disabled, the core writer instead
  -usegcore     write the dumps with gdb's gcore (stop mode; needs gcore on PATH)
  -log STREAM   extended tracing, every sample judged, to syslog or stdout
  --history DIR also write each dump's sample history (trigger, value, process identity, the last 60
                samples) to DIR/<dump name>.json; off by default, so a ProcDump command line writes
                exactly the files ProcDump writes
  -h, -?        this text

Not available yet (refused, exit 2): -restrack, -sr, -fx (resource tracking, a later release).
Other commands (tripdump --help lists them): dump, sample, counters, agent, crash-handler, watch, node;
each has its own --help.
Exit codes: 0 done, interrupted or target exited; 1 a dump failed; 2 bad command line.
`;

/** A target as given: a pid, a name to look up now, a name to wait for, or a process group. */
export type TargetArg = Exclude<TargetSpec, { match: unknown }> | { lookup: string };

export interface ProcdumpConfig {
  target: TargetArg;
  triggers: Trigger[];
  count: number;
  cooldownMs: number;
  pollMs: number;
  sustainMs: number;
  overwrite: boolean;
  filter: number | undefined;
  mode: DumpMode | undefined;
  out: { dir: string; file?: string };
  log: 'syslog' | 'stdout' | undefined;
  /** -usegcore: gdb's gcore writes the dumps. */
  gcore: boolean;
  /** --history DIR: where each dump's sample history goes (none by default). */
  historyDir: string | undefined;
  /** The Node switches (node-switches.ts); undefined when none was given. */
  node: NodeConfig | undefined;
  /** --type: what a .NET target's runtime writes (undefined: full). */
  dotnetType: DotnetDumpType | undefined;
}

/** What the switches build up, before the target and output are known. */
export interface Building {
  triggers: Trigger[];
  count?: number;
  /** The count and cooldown some triggers imply when -n and -s are not given (-gcm's thresholds, -gcgen). */
  defaultCount?: number;
  defaultCooldownMs?: number;
  /** -e, and -f's filters for it. */
  exceptions?: true;
  exceptionFilters?: string[];
  cooldownMs?: number;
  pollMs?: number;
  sustainMs?: number;
  overwrite: boolean;
  filter?: number;
  mode?: DumpMode;
  log?: 'syslog' | 'stdout';
  wait: boolean;
  group: boolean;
  gcore: boolean;
  historyDir?: string;
  node?: NodeBuilding;
  dotnetType?: DotnetDumpType;
}

export interface Switch {
  /** How many of the following arguments are its values. */
  values: 0 | 1 | 2;
  /** Switches that set the same thing (-c and -cl): only one of a group may be given. */
  group?: string;
  /** Only spelled with '-' (ProcDump's -usegcore: '/usegcore' is a path). */
  dashOnly?: boolean;
  /** Applies the switch; throws UsageError naming `spelled` for a bad value. */
  apply(b: Building, values: string[], spelled: string): void;
}

function threshold(kind: ThresholdKind, dir: 'above' | 'below', max: number, whole: boolean): Switch {
  const multi = kind === 'memory';
  return {
    values: 1,
    group: kind,
    apply(b, [v], s) {
      const parse = (x: string) => (whole ? parseInteger(s, x, 0, max) : parseNumber(s, x, 0, max));
      if (multi && v!.split(',').some((p) => p.trim() === ''))
        throw new UsageError(`${s} needs MB[,MB...], got '${v}'`, s);
      const values = multi ? v!.split(',').map(parse) : [parse(v!)];
      b.triggers.push(new ThresholdTrigger(kind, dir, values));
    },
  };
}

const flag = (apply: (b: Building) => void): Switch => ({ values: 0, apply: (b) => apply(b) });
const value = (apply: (b: Building, v: string, spelled: string) => void): Switch => ({
  values: 1,
  apply: (b, [v], s) => apply(b, v!, s),
});
/** A switch of ProcDump's that tripdump refuses for now: `what` it is and why it is refused (exit 2). */
const notYet = (what: string, why: string): Switch => ({
  values: 0,
  apply(_b, _v, s) {
    throw new UsageError(`${s} (${what}) ${why}`, s);
  },
});
const restrack = (what: string) =>
  notYet(what, 'is not available in tripdump yet: it comes in a later release');

/** ProcDump 3.x's switches and tripdump's own, by lower-case name. */
export const SWITCHES: Record<string, Switch> = {
  c: threshold('cpu', 'above', MAX_CPU, false),
  cl: threshold('cpu', 'below', MAX_CPU, false),
  m: threshold('memory', 'above', MAX_MB, false),
  ml: threshold('memory', 'below', MAX_MB, false),
  tc: threshold('threads', 'above', MAX_THREADS, true),
  fc: threshold('fds', 'above', MAX_FDS, true),
  so: threshold('sockets', 'above', MAX_FDS, true),
  sig: value((b, v, s) => {
    const list = v.split(',');
    if (list.some((x) => x.trim() === '')) throw new UsageError(`${s} needs N[,N...], got '${v}'`, s);
    for (const x of list) refusePadding(s, x);
    b.triggers.push(new SignalTrigger(list));
  }),
  n: value((b, v, s) => {
    b.count = parseInteger(s, v, 1, MAX_DUMPS);
  }),
  s: value((b, v, s) => {
    b.cooldownMs = parseNumber(s, v, ...RANGE.seconds) * 1000;
  }),
  pf: value((b, v, s) => {
    b.pollMs = parseNumber(s, v, ...RANGE.intervalMs);
  }),
  for: value((b, v, s) => {
    b.sustainMs = parseNumber(s, v, ...RANGE.seconds) * 1000;
  }),
  o: flag((b) => {
    b.overwrite = true;
  }),
  mc: value((b, v, s) => {
    b.filter = parseMask(s, v);
  }),
  mode: value((b, v, s) => {
    if (v !== 'stop' && v !== 'snapshot')
      throw new UsageError(`${s} must be 'stop' or 'snapshot', got '${v}'`, s);
    b.mode = v;
  }),
  usegcore: { ...flag((b) => (b.gcore = true)), dashOnly: true },
  type: value((b, v, s) => {
    b.dotnetType = parseDumpType(v, s);
  }),
  log: value((b, v, s) => {
    const stream = v.toLowerCase();
    if (stream !== 'syslog' && stream !== 'stdout')
      throw new UsageError(`${s} takes the stream to trace to, syslog or stdout, got '${v}'`, s);
    b.log = stream;
  }),
  history: value((b, v, s) => {
    const out = outputTarget(v, s);
    if (out.file) throw new UsageError(`${s}: '${v}' is not a folder`, s);
    b.historyDir = out.dir;
  }),
  w: flag((b) => {
    b.wait = true;
  }),
  pgid: flag((b) => {
    b.group = true;
  }),
  restrack: restrack('resource tracking'),
  sr: restrack('the -restrack sample rate'),
  fx: restrack('the -restrack exclude filter'),
  ...DOTNET_SWITCHES,
  ...NODE_SWITCHES,
};

const HELP = new Set(['h', 'help', '?']);

/** A switch: -x, --x or /x, where /x counts only for a known name so that /tmp/dumps stays a path. */
function switchName(arg: string): string | undefined {
  const m = /^(?:--?|\/)([a-z?][a-z-]*)$/i.exec(arg);
  if (!m) return undefined;
  const name = m[1]!.toLowerCase();
  const known = SWITCHES[name] ?? (HELP.has(name) ? { dashOnly: false } : undefined);
  if (arg.startsWith('/') && (!known || known.dashOnly)) return undefined;
  return name;
}

/** Parses ProcDump's command line; throws UsageError naming the option and value. Returns undefined for -h. */
export function parseProcdumpArgs(argv: readonly string[]): ProcdumpConfig | undefined {
  if (argv.some((a) => HELP.has(switchName(a) ?? ''))) return undefined;
  const b: Building = { triggers: [], overwrite: false, wait: false, group: false, gcore: false };
  const given = new Map<string, string>(); // switch or group → how it was spelled
  const positionals: string[] = [];
  let lastValue: { spelled: string; value: string } | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = switchName(arg);
    if (name === undefined) {
      if (/^-/.test(arg) && !/^-\d/.test(arg)) throw new UsageError(`unknown switch '${arg}'`, arg);
      positionals.push(arg);
      continue;
    }
    const sw = SWITCHES[name];
    if (!sw) throw new UsageError(`unknown switch '${arg}'`, arg);
    const twice = given.get(name);
    if (twice !== undefined)
      throw new UsageError(
        `${arg} is given twice${twice !== arg ? ` (also as ${twice})` : ''}: give it once`,
        arg,
      );
    const rival = sw.group ? given.get(`group:${sw.group}`) : undefined;
    if (rival !== undefined) throw new UsageError(`${rival} and ${arg} contradict each other: give one`, arg);
    given.set(name, arg);
    if (sw.group) given.set(`group:${sw.group}`, arg);
    const values = argv.slice(i + 1, i + 1 + sw.values);
    for (const v of values)
      if (switchName(v) !== undefined && !/^-\d/.test(v)) throw new UsageError(`${arg} needs a value`, arg);
    if (values.length < sw.values) throw new UsageError(`${arg} needs a value`, arg);
    i += sw.values;
    sw.apply(b, values, arg);
    if (values.length) lastValue = { spelled: arg, value: values.at(-1)! };
  }

  finishDotnetSwitches(b, (name) => given.get(name));
  const node = finishNodeSwitches(b);
  const signal = b.triggers.some((t) => t instanceof SignalTrigger);
  if (signal && b.triggers.length > 1)
    // The watcher holds the target under ptrace for the whole session: no other writer could attach.
    throw new UsageError('-sig cannot be combined with other triggers', given.get('sig'));
  if (signal && b.pollMs !== undefined)
    throw new UsageError('-pf has no meaning with -sig (signals are not polled)', given.get('pf'));
  const thresholds = Math.max(
    1,
    ...b.triggers.map((t) => (t instanceof ThresholdTrigger ? t.thresholds.length : 1)),
  );
  if (thresholds > 1 && b.count !== undefined)
    throw new UsageError(
      `-n cannot be combined with several memory thresholds: one dump is written per threshold (${thresholds})`,
      given.get('n'),
    );
  if (b.gcore) {
    const why =
      b.mode === 'snapshot'
        ? ['--mode snapshot', 'gcore stops the target for the whole dump']
        : b.filter !== undefined
          ? ['-mc', "gcore uses the target's own coredump_filter"]
          : signal
            ? ['-sig', 'the signal watcher holds the target, gcore could not attach']
            : b.dotnetType
              ? ['--type', "gcore writes every dump, a .NET runtime none (--type chooses the runtime's)"]
              : undefined;
    if (why) throw new UsageError(`-usegcore cannot be used with ${why[0]}: ${why[1]}`, '-usegcore');
  }
  if (b.triggers.length === 0) b.triggers.push(new TimerTrigger());

  const target = parseTarget(b, positionals, lastValue);
  const out = parseOutput(b, positionals);
  return {
    target,
    triggers: b.triggers,
    count: b.count ?? Math.max(thresholds, b.defaultCount ?? 1),
    cooldownMs: b.cooldownMs ?? b.defaultCooldownMs ?? 10_000,
    pollMs: b.pollMs ?? 1000,
    sustainMs: b.sustainMs ?? 0,
    overwrite: b.overwrite,
    filter: b.filter,
    mode: b.mode,
    out,
    log: b.log,
    gcore: b.gcore,
    historyDir: b.historyDir,
    node,
    dotnetType: b.dotnetType,
  };
}

function parseTarget(
  b: Building,
  positionals: readonly string[],
  lastValue: { spelled: string; value: string } | undefined,
): TargetArg {
  if (b.wait && b.group) throw new UsageError('-w and -pgid cannot be used together', '-pgid');
  const arg = positionals[0];
  if (arg === undefined) {
    const what = b.wait ? 'a process name after -w' : b.group ? 'a process group after -pgid' : 'a PID';
    const took =
      lastValue && /^\d+$/.test(lastValue.value)
        ? ` (${lastValue.spelled} took ${lastValue.value} as its value: give ${lastValue.spelled} its value, then the PID)`
        : '';
    throw new UsageError(`which process? give ${what}${took}`, 'PID');
  }
  const numeric = /^\d+$/.test(arg);
  if (b.group) {
    if (!numeric) throw new UsageError(`-pgid takes a process group id, got '${arg}'`, '-pgid');
    return { pgid: checkPid(Number(arg), '-pgid') };
  }
  if (b.wait) {
    if (numeric)
      throw new UsageError(
        `-w waits for a process by name, and '${arg}' is a PID (monitor it without -w)`,
        '-w',
      );
    return { name: checkName(arg) };
  }
  if (!numeric) return { lookup: checkName(arg) };
  const pid = checkPid(Number(arg), 'PID');
  checkDotnetTarget(pid, b);
  checkNodeTarget(pid, b);
  return { pid };
}

function checkName(arg: string): string {
  if (arg === '' || arg.includes('/'))
    throw new UsageError(`'${arg}' is neither a PID nor a process name (process names hold no '/')`, 'PID');
  return arg;
}

function parseOutput(b: Building, positionals: readonly string[]): { dir: string; file?: string } {
  if (positionals.length > 2) throw new UsageError(`unexpected argument '${positionals[2]}'`, positionals[2]);
  const arg = positionals[1];
  const out = outputTarget(arg, 'DUMP_FILE|DUMP_DIR');
  if (out.file && (b.wait || b.group)) {
    const numeric = /^\d+$/.test(arg!);
    throw new UsageError(
      numeric && b.group
        ? `-pgid takes one process group id: '${arg}' would be the dump file name, and a dump file name cannot be used when several processes are monitored (give a folder, or monitor PID ${arg} without -pgid)`
        : `a dump file name ('${arg}') cannot be used when several processes are monitored (${b.wait ? '-w' : '-pgid'}): give a folder`,
      'DUMP_FILE',
    );
  }
  if (out.file) {
    // The name gets ".<pid>" and maybe "_<n>": leave room for both within NAME_MAX.
    if (Buffer.byteLength(out.file) > 240)
      throw new UsageError(
        `DUMP_FILE: '${out.file.slice(0, 40)}…' is ${Buffer.byteLength(out.file)} bytes; a dump name is at most 240 (file names hold 255 with ".<pid>")`,
        'DUMP_FILE',
      );
    try {
      accessSync(out.dir, constants.W_OK | constants.X_OK);
    } catch {
      throw new UsageError(`DUMP_FILE: folder '${out.dir}' is not writable`, 'DUMP_FILE');
    }
  }
  return out;
}

/**
 * ProcDump's settings block: labels padded to 40 columns. `writer`: who writes the one target's dumps
 * (undefined for -w and -pgid).
 */
export function settingsBlock(
  c: ProcdumpConfig,
  processLine: string,
  writer?: DumpWriterKind | undefined,
): string {
  const row = (label: string, value: string) => `${label.padEnd(40)}${escapeControl(value)}\n`;
  let s = processLine;
  for (const kind of Object.values(KINDS)) {
    const t = c.triggers.find((x) => x.setting[0] === kind.label);
    s += row(kind.label, t ? t.setting[1] : 'n/a');
  }
  for (const t of c.triggers)
    if (isDotnetTrigger(t) || isNodeTrigger(t)) s += row(t.setting[0], t.setting[1]);
  if (c.node) s += row('Node Dump:', c.node.outputs ? c.node.outputs.join(',') : 'by trigger');
  const sig = c.triggers.find((t) => t.tag === 'signal');
  s += row('Signal:', sig ? sig.setting[1] : 'n/a');
  if (c.triggers.some((t) => t.tag === 'time')) s += row('Timer:', `every ${c.cooldownMs / 1000} s`);
  s += row('Polling Interval (ms):', String(c.pollMs));
  s += row('Threshold (s):', String(c.cooldownMs / 1000));
  if (c.sustainMs) s += row('Sustain (s):', String(c.sustainMs / 1000));
  s += row('Number of Dumps:', String(c.count));
  s += row('Dump Mode:', dumpModeSetting(c, writer));
  s += row('Output directory:', c.out.dir);
  if (c.out.file)
    s += row('Custom name for core dumps:', `${c.out.file}.<pid>, then ${c.out.file}_<n>.<pid>`);
  if (c.historyDir) s += row('Sample history:', `${c.historyDir}/<dump name>.json`);
  return s;
}
