// ProcDump 3.x's .NET switches for the monitor command line, taken out of argv before the ProcDump parser
// sees the rest: -gcm, -gcgen, -e, -f, -pc and -pcl (which takes two values: PROVIDER:COUNTER VALUE).
import { UsageError } from '../errors.js';
import { DotnetUnavailableError } from '../runtimes/dotnet/errors.js';
import { locateSocket } from '../runtimes/dotnet/socket.js';
import {
  CounterTrigger,
  ExceptionTrigger,
  GcGenerationTrigger,
  GcMemoryTrigger,
  parseCounterSpec,
  parseGcm,
} from '../runtimes/dotnet/triggers.js';
import type { Trigger } from '../triggers/trigger.js';

export const DOTNET_USAGE = `.NET triggers (over the runtime's diagnostics socket; nothing is injected into the target):
  -gcm [GEN:]MB[,MB..]  managed heap at or above each threshold in turn, after a collection; GEN is
                gen0, gen1, gen2, LOH or POH (default: the total)
  -gcgen N      a dump when a collection of generation N starts and one when it ends (-n 2, -s 0)
  -e            a first-chance exception
  -f F[,F..]    with -e: only exceptions whose "Type" or "Type: message" matches (* wildcards)
  -pc PROVIDER:COUNTER[pNN] VALUE   an EventCounter or Metrics instrument at or above VALUE (its own
                unit; [p95] for a histogram percentile); tripdump counters PID lists them
  -pcl PROVIDER:COUNTER[pNN] VALUE  the same, below VALUE
`;

const ARITY: Record<string, number> = { gcm: 1, gcgen: 1, e: 0, f: 1, pc: 2, pcl: 2 };

export interface DotnetSwitches {
  triggers: Trigger[];
  /** The dump count these triggers imply when -n is not given (-gcm's thresholds, -gcgen's two). */
  defaultCount: number;
  /** The cooldown they imply when -s is not given (-gcgen: 0, so the end of the collection is dumped too). */
  defaultCooldownMs: number | undefined;
  /** argv without them. */
  rest: string[];
}

export function extractDotnetSwitches(argv: readonly string[]): DotnetSwitches {
  const seen = new Map<string, string[]>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^(?:--?|\/)([a-z]+)$/i.exec(arg);
    const name = m?.[1]?.toLowerCase();
    const arity = name === undefined ? undefined : ARITY[name];
    if (arity === undefined || name === undefined) {
      rest.push(arg);
      continue;
    }
    if (seen.has(name)) throw new UsageError(`${arg} is given twice`, arg);
    const values = argv.slice(i + 1, i + 1 + arity);
    if (values.length < arity || values.some((v) => /^(?:--?|\/)[a-z]+$/i.test(v)))
      throw new UsageError(arity === 2 ? `${arg} needs PROVIDER:COUNTER VALUE` : `${arg} needs a value`, arg);
    seen.set(name, values);
    i += arity;
  }
  const triggers: Trigger[] = [];
  let defaultCount = 1;
  let defaultCooldownMs: number | undefined;
  const gcm = seen.get('gcm')?.[0];
  if (gcm !== undefined) {
    const { heap, thresholdsMB } = parseGcm(gcm);
    triggers.push(new GcMemoryTrigger(heap, thresholdsMB));
    defaultCount = Math.max(defaultCount, thresholdsMB.length);
  }
  const gcgen = seen.get('gcgen')?.[0];
  if (gcgen !== undefined) {
    if (!/^\d+$/.test(gcgen))
      throw new UsageError(`-gcgen needs a generation 0, 1 or 2, got '${gcgen}'`, '-gcgen');
    triggers.push(new GcGenerationTrigger(Number(gcgen)));
    defaultCount = Math.max(defaultCount, 2);
    defaultCooldownMs = 0;
  }
  if (seen.has('f') && !seen.has('e')) throw new UsageError('-f filters exceptions: use it with -e', '-f');
  if (seen.has('e')) {
    const f = seen.get('f')?.[0];
    triggers.push(new ExceptionTrigger(f === undefined ? [] : f.split(',').map((x) => x.trim())));
  }
  for (const [flag, direction] of [
    ['pc', 'above'],
    ['pcl', 'below'],
  ] as const) {
    const v = seen.get(flag);
    if (!v) continue;
    const spec = parseCounterSpec(v[0]!, `-${flag}`);
    if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v[1]!))
      throw new UsageError(`-${flag} needs a number after the counter, got '${v[1]}'`, `-${flag}`);
    triggers.push(new CounterTrigger(spec, direction, Number(v[1])));
  }
  return { triggers, defaultCount, defaultCooldownMs, rest };
}

/** A .NET trigger on a process that cannot have one is a mistake on the command line: say so at once. */
export function checkDotnetTarget(pid: number): void {
  try {
    locateSocket(pid);
  } catch (e) {
    if (e instanceof DotnetUnavailableError)
      throw new UsageError(`.NET triggers need a .NET process with diagnostics: ${e.message}`, 'PID');
    throw e;
  }
}
