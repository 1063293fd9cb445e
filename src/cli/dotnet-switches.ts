// ProcDump 3.x's .NET switches for the monitor command line, as rows of procdump.ts's switch table: -gcm,
// -gcgen, -e, -f, -pc and -pcl (which take two values: PROVIDER:COUNTER VALUE).
import { UsageError } from '../errors.js';
import { DotnetUnavailableError } from '../runtimes/dotnet/errors.js';
import { locateSocket } from '../runtimes/dotnet/socket.js';
import {
  CounterTrigger,
  ExceptionTrigger,
  GcGenerationTrigger,
  GcMemoryTrigger,
  isDotnetTrigger,
  parseCounterSpec,
  parseGcm,
} from '../runtimes/dotnet/triggers.js';
import type { Trigger } from '../triggers/trigger.js';
import type { Building, Switch } from './procdump.js';

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

function counter(direction: 'above' | 'below'): Switch {
  return {
    values: 2,
    apply(b, [spec, value], s) {
      const parsed = parseCounterSpec(spec!, s);
      if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value!))
        throw new UsageError(`${s} needs a number after the counter, got '${value}'`, s);
      b.triggers.push(new CounterTrigger(parsed, direction, Number(value)));
    },
  };
}

export const DOTNET_SWITCHES: Record<string, Switch> = {
  gcm: {
    values: 1,
    apply(b, [v]) {
      const { heap, thresholdsMB } = parseGcm(v!);
      b.triggers.push(new GcMemoryTrigger(heap, thresholdsMB));
      // One dump per threshold, as -m.
      b.defaultCount = Math.max(b.defaultCount ?? 1, thresholdsMB.length);
    },
  },
  gcgen: {
    values: 1,
    apply(b, [v], s) {
      if (!/^\d+$/.test(v!)) throw new UsageError(`${s} needs a generation 0, 1 or 2, got '${v}'`, s);
      b.triggers.push(new GcGenerationTrigger(Number(v)));
      // The start of the collection and its end: two dumps, with no quiet time between them.
      b.defaultCount = Math.max(b.defaultCount ?? 1, 2);
      b.defaultCooldownMs = 0;
    },
  },
  e: {
    values: 0,
    apply(b) {
      b.exceptions = true;
    },
  },
  f: {
    values: 1,
    apply(b, [v]) {
      b.exceptionFilters = v!.split(',').map((x) => x.trim());
    },
  },
  pc: counter('above'),
  pcl: counter('below'),
};

/** After every switch: -e with its -f filters becomes one trigger. */
export function finishDotnetSwitches(b: Building, spelled: (name: string) => string | undefined): void {
  if (b.exceptionFilters && !b.exceptions)
    throw new UsageError('-f filters exceptions: use it with -e', spelled('f'));
  if (b.exceptions) b.triggers.push(new ExceptionTrigger(b.exceptionFilters ?? []));
}

/** A .NET trigger on a process that cannot have one is a mistake on the command line: say so at once. */
export function checkDotnetTarget(pid: number, triggers: readonly Trigger[]): void {
  if (!triggers.some(isDotnetTrigger)) return;
  try {
    locateSocket(pid);
  } catch (e) {
    // A planted socket is not a command-line mistake: its own error, exit 1.
    if (e instanceof DotnetUnavailableError && e.reason !== 'untrusted')
      throw new UsageError(`.NET triggers need a .NET process with diagnostics: ${e.message}`, 'PID');
    throw e;
  }
}

export { isDotnetTrigger };
