// ProcDump for Linux's command line: `tripdump [options] {PID | -w NAME | -pgid PGID} [DUMP_FILE | DUMP_DIR]`,
// same switches and meaning, case-insensitive, `-` or `/`, with its mistakes fixed (see README).

import type { DumpMode } from '../dump/core.js';
import { UsageError } from '../errors.js';
import type { TargetSpec } from '../monitor/monitor.js';
import { HeapUsedTrigger } from '../runtimes/node/triggers.js';
import { checkPid } from '../sampler/sampler.js';
import { SignalTrigger } from '../triggers/signal.js';
import { KINDS, type ThresholdKind, ThresholdTrigger, TimerTrigger } from '../triggers/threshold.js';
import type { Trigger } from '../triggers/trigger.js';
import { parseInteger, parseMask } from './common.js';
import { outputTarget } from './dump.js';
import {
  checkNodeTarget,
  NODE_SWITCH_HELP,
  NODE_SWITCHES,
  type NodeConfig,
  nodeSettings,
  parseNodeSwitches,
} from './node-options.js';

export const PROCDUMP_USAGE = `Usage: tripdump [options] {PID | -w NAME | -pgid PGID} [DUMP_FILE | DUMP_DIR]

Monitors a process and writes core dumps when a trigger fires (ProcDump for Linux's options).
Switches are case-insensitive and may start with - or /.

Triggers (several run at once and share the dump count; none: a dump every -s seconds):
  -c N          CPU at or above N percent of one core (over the last polling interval; may exceed 100)
  -cl N         CPU below N percent
  -m MB[,MB..]  resident memory (RSS; ProcDump calls it commit) at or above each threshold in turn
  -ml MB[,MB..] resident memory below each threshold in turn
  -tc N         thread count at or above N
  -fc N         open file descriptors at or above N
  -so N         open sockets at or above N
  -sig N[,N..]  the process receives one of these signals (numbers or names): it is dumped right before
                delivery, then the signal is delivered as if nothing happened (not with other triggers)
Options:
  -n COUNT      dumps to write per process, then exit (default 1; the number of -m/-ml thresholds)
  -s SECONDS    quiet time after each dump (default 10)
  -pf MS        polling interval in milliseconds (default 1000)
  --for SECONDS the condition must hold this long before a dump (default 0: the first sample)
  -o            overwrite existing dump files (default: choose a free name)
  -mc HEX       coredump_filter mask for the dumps (33 or 0x33)
  --mode M      snapshot (default: the target pauses for milliseconds) or stop
  -w NAME       wait for processes named NAME and monitor every instance
  -pgid PGID    monitor every member of process group PGID, including later ones
  -log syslog|stdout  extended tracing (every sample judged)
  -h            this text
${NODE_SWITCH_HELP}
Other commands: tripdump sample --help, tripdump dump --help, tripdump node --help.
Exit codes: 0 done, interrupted or target exited; 1 a dump failed; 2 bad command line.
`;

export interface ProcdumpConfig {
  target: TargetSpec;
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
  /** Node switches (node-options.ts); undefined when none was given. */
  node: NodeConfig | undefined;
}

type ValueKind = 'flag' | 'value' | 'optional';
const SWITCHES: Record<string, ValueKind> = {
  c: 'value',
  cl: 'value',
  m: 'value',
  ml: 'value',
  tc: 'value',
  fc: 'value',
  so: 'value',
  sig: 'value',
  n: 'value',
  s: 'value',
  pf: 'value',
  o: 'flag',
  mc: 'value',
  w: 'value',
  pgid: 'value',
  log: 'optional',
  for: 'value',
  mode: 'value',
  h: 'flag',
  help: 'flag',
  '?': 'flag',
  ...NODE_SWITCHES,
};

/** A switch: -x, --x or /x, where /x counts only for a known name so that /tmp/dumps stays a path. */
function switchName(arg: string): string | undefined {
  const m = /^(?:--?|\/)([a-z?][a-z-]*)$/i.exec(arg);
  if (!m) return undefined;
  const name = m[1]!.toLowerCase();
  if (arg.startsWith('/') && !(name in SWITCHES)) return undefined;
  return name;
}

function number(option: string, value: string, min: number): number {
  if (!/^\d+(\.\d+)?$/.test(value))
    throw new UsageError(`${option} needs a number ≥ ${min}, got '${value}'`, option);
  const n = Number(value);
  if (n < min) throw new UsageError(`${option} must be ≥ ${min}, got ${value}`, option);
  return n;
}

function list(option: string, value: string): number[] {
  const parts = value.split(',');
  if (parts.some((p) => p.trim() === ''))
    throw new UsageError(`${option} needs MB[,MB...], got '${value}'`, option);
  return parts.map((p) => number(option, p.trim(), 0));
}

/** Parses ProcDump's command line; throws UsageError naming the option and value. Returns undefined for -h. */
export function parseProcdumpArgs(argv: readonly string[]): ProcdumpConfig | undefined {
  const seen = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = switchName(arg);
    if (name === undefined) {
      if (/^-/.test(arg) && !/^-\d/.test(arg)) throw new UsageError(`unknown switch '${arg}'`, arg);
      positionals.push(arg);
      continue;
    }
    const kind = SWITCHES[name];
    if (kind === undefined) throw new UsageError(`unknown switch '${arg}'`, arg);
    if (seen.has(name)) throw new UsageError(`${arg} is given twice`, arg);
    if (kind === 'flag') seen.set(name, '');
    else if (kind === 'optional') {
      const next = argv[i + 1]?.toLowerCase();
      const given = next === 'syslog' || next === 'stdout';
      seen.set(name, given ? next : 'syslog');
      if (given) i++;
    } else {
      const next = argv[i + 1];
      if (next === undefined || (switchName(next) !== undefined && !/^-\d/.test(next)))
        throw new UsageError(`${arg} needs a value`, arg);
      seen.set(name, next);
      i++;
    }
  }
  if (seen.has('h') || seen.has('help') || seen.has('?')) return undefined;

  const triggers: Trigger[] = [];
  const threshold = (flag: string, kind: ThresholdKind, dir: 'above' | 'below', multi: boolean) => {
    const v = seen.get(flag);
    if (v === undefined) return;
    triggers.push(new ThresholdTrigger(kind, dir, multi ? list(`-${flag}`, v) : [number(`-${flag}`, v, 0)]));
  };
  threshold('c', 'cpu', 'above', false);
  threshold('cl', 'cpu', 'below', false);
  threshold('m', 'memory', 'above', true);
  threshold('ml', 'memory', 'below', true);
  threshold('tc', 'threads', 'above', false);
  threshold('fc', 'fds', 'above', false);
  threshold('so', 'sockets', 'above', false);
  const node = parseNodeSwitches(seen);
  triggers.push(...node.triggers);
  if (seen.has('c') && seen.has('cl'))
    throw new UsageError('-c and -cl contradict each other: give one', '-cl');
  if (seen.has('m') && seen.has('ml'))
    throw new UsageError('-m and -ml contradict each other: give one', '-ml');
  if (seen.has('sig')) {
    // The watcher holds the target under ptrace for the whole session: no other writer could attach.
    if (triggers.length) throw new UsageError('-sig cannot be combined with other triggers', '-sig');
    const list = seen
      .get('sig')!
      .split(',')
      .map((x) => x.trim());
    if (list.some((x) => x === ''))
      throw new UsageError(`-sig needs N[,N...], got '${seen.get('sig')}'`, '-sig');
    triggers.push(new SignalTrigger(list));
  }
  if (triggers.length === 0) triggers.push(new TimerTrigger());

  const thresholdsCount = Math.max(
    1,
    ...triggers.map((t) =>
      t instanceof ThresholdTrigger || t instanceof HeapUsedTrigger ? t.thresholds.length : 1,
    ),
  );
  const count = seen.has('n') ? parseInteger('-n', seen.get('n'), 1) : thresholdsCount;
  const cooldownMs = seen.has('s') ? number('-s', seen.get('s')!, 0) * 1000 : 10_000;
  const pollMs = seen.has('pf') ? number('-pf', seen.get('pf')!, 1) : 1000;
  const sustainMs = seen.has('for') ? number('--for', seen.get('for')!, 0) * 1000 : 0;
  const filter = seen.has('mc') ? parseMask('-mc', seen.get('mc')) : undefined;
  const mode = seen.get('mode');
  if (mode !== undefined && mode !== 'stop' && mode !== 'snapshot')
    throw new UsageError(`--mode must be 'stop' or 'snapshot', got '${mode}'`, '--mode');
  const log = seen.get('log') as ProcdumpConfig['log'];

  let target: TargetSpec;
  const rest = [...positionals];
  if (seen.has('w') && seen.has('pgid'))
    throw new UsageError('-w and -pgid cannot be used together', '-pgid');
  if (seen.has('w')) {
    const name = seen.get('w')!;
    if (/^\d+$/.test(rest[0] ?? '') && rest.length >= 1 && name !== rest[0])
      throw new UsageError(`-w takes a process name, not a PID as well ('${rest[0]}')`, '-w');
    target = { name };
  } else if (seen.has('pgid')) {
    target = { pgid: checkPid(parseInteger('-pgid', seen.get('pgid'), 1), '-pgid') };
  } else {
    const pid = rest.shift();
    if (pid === undefined) throw new UsageError('which process? give a PID, -w NAME or -pgid PGID', 'PID');
    if (!/^\d+$/.test(pid))
      throw new UsageError(`'${pid}' is not a PID; to wait for a process by name use -w ${pid}`, 'PID');
    target = { pid: checkPid(Number(pid), 'PID') };
  }
  if (rest.length > 1) throw new UsageError(`unexpected argument '${rest[1]}'`, rest[1]);
  checkNodeTarget(target, node.node);
  const out = outputTarget(rest[0], 'DUMP_FILE|DUMP_DIR');
  return {
    target,
    triggers,
    count,
    cooldownMs,
    pollMs,
    sustainMs,
    overwrite: seen.has('o'),
    filter,
    mode: mode as DumpMode | undefined,
    out,
    log,
    node: node.node,
  };
}

/** ProcDump's settings block: labels padded to 40 columns. */
export function settingsBlock(c: ProcdumpConfig, processLine: string): string {
  const row = (label: string, value: string) => `${label.padEnd(40)}${value}\n`;
  let s = processLine;
  for (const kind of Object.values(KINDS)) {
    const t = c.triggers.find((x) => x.setting[0] === kind.label);
    s += row(kind.label, t ? t.setting[1] : 'n/a');
  }
  s += nodeSettings(c.triggers, c.node, row);
  const sig = c.triggers.find((t) => t.tag === 'signal');
  s += row('Signal:', sig ? sig.setting[1] : 'n/a');
  if (c.triggers.some((t) => t.tag === 'time')) s += row('Timer:', `every ${c.cooldownMs / 1000} s`);
  s += row('Polling Interval (ms):', String(c.pollMs));
  s += row('Threshold (s):', String(c.cooldownMs / 1000));
  if (c.sustainMs) s += row('Sustain (s):', String(c.sustainMs / 1000));
  s += row('Number of Dumps:', String(c.count));
  s += row('Dump Mode:', c.mode ?? 'snapshot');
  s += row('Output directory:', c.out.dir);
  if (c.out.file) s += row('Custom name for core dumps:', `${c.out.file}[_<counter>]`);
  return s;
}
