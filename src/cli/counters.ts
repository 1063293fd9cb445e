// `tripdump counters PID [--providers LIST] [--interval S] [--count N] [--json]`: what dotnet-counters
// shows, read over the diagnostics socket: EventCounters and System.Diagnostics.Metrics instruments, as a
// table refreshed each interval or as JSON lines. How a user finds a counter's name before -pc uses it.
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { dotnetCounters } from '../runtimes/dotnet/api.js';
import { DotnetUnavailableError } from '../runtimes/dotnet/errors.js';
import type { CounterValue } from '../runtimes/dotnet/events.js';
import { locateSocket } from '../runtimes/dotnet/socket.js';
import { checkPid } from '../sampler/sampler.js';
import { EXIT, interruptSignal, parseInteger, requireProcess } from './common.js';

export const COUNTERS_USAGE = `Usage: tripdump counters PID [options]

Prints the .NET counters of a process (EventCounters and System.Diagnostics.Metrics instruments), read
over its diagnostics socket without injecting anything.

  --providers LIST  comma-separated EventSources / Meters (default System.Runtime); each name is read
                    both as an EventSource's counters and as a Meter's instruments
  --interval S      seconds between values (default 1; the EventCounter interval is process-wide)
  --count N         intervals to print, then exit (default 0: until Ctrl-C or the process exits)
  --json            one JSON object per value instead of a table

A counter is named PROVIDER:COUNTER in -pc/-pcl (add [p95] for a histogram percentile).
Meter instruments come from the runtime's shared Metrics session (.NET 8+): dotnet-counters monitor and
dotnet-monitor read beside tripdump at the same interval. When another tool holds that session alone
(dotnet-counters collect, dotnet-trace) or reads at another interval, tripdump says which and exits 1.
`;

function key(c: CounterValue): string {
  return `${c.provider}:${c.name}${c.tags ? `{${c.tags}}` : ''}`;
}

export async function countersCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  const parse = () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        providers: { type: 'string' },
        interval: { type: 'string' },
        count: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  try {
    parsed = parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(COUNTERS_USAGE);
    return EXIT.ok;
  }
  const [pidArg, ...extra] = positionals;
  if (pidArg === undefined) throw new UsageError('which process? give a PID', 'PID');
  if (!/^\d+$/.test(pidArg))
    throw new UsageError(`'${pidArg}' is not a pid (a positive whole number)`, 'PID');
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const pid = checkPid(Number(pidArg));
  const providers = values.providers?.split(',').map((p) => p.trim());
  if (providers?.some((p) => p === ''))
    throw new UsageError(`--providers has an empty name: '${values.providers}'`, '--providers');
  const intervalSec =
    values.interval === undefined ? 1 : parseInteger('--interval', values.interval, 1, 3600);
  const count = values.count === undefined ? 0 : parseInteger('--count', values.count, 0);
  requireProcess(pid);
  // A process that is not .NET (or has its diagnostics off) is the wrong PID, refused as every command
  // refuses one (exit 2), before anything is asked of it. A planted socket is no command-line mistake: its
  // own error, exit 1 (as for the monitor's .NET triggers).
  try {
    locateSocket(pid);
  } catch (e) {
    if (e instanceof DotnetUnavailableError && e.reason !== 'untrusted')
      throw new UsageError(e.message, 'PID');
    throw e;
  }
  const signal = interruptSignal();

  // An interval's values are in when a series seen in it comes again: the table is printed then.
  let table = new Map<string, CounterValue>();
  let intervals = 0;
  const flush = () => {
    if (!table.size) return;
    intervals++;
    if (values.json) {
      table = new Map();
      return;
    }
    const rows = [...table.values()].sort((a, b) => key(a).localeCompare(key(b)));
    const width = Math.max(...rows.map((r) => key(r).length));
    let text = `${new Date().toISOString()}\n`;
    for (const r of rows) {
      const v = r.quantiles
        ? Object.entries(r.quantiles)
            .map(([q, x]) => `${q}=${+x.toPrecision(6)}`)
            .join(' ')
        : String(+r.value.toPrecision(6));
      text += `  ${key(r).padEnd(width)}  ${v}${r.unit ? ` ${r.unit}` : ''}\n`;
    }
    out.write(`${text}\n`);
    table = new Map();
  };
  for await (const c of dotnetCounters(pid, { ...(providers ? { providers } : {}), intervalSec, signal })) {
    if (c.kind === 'notice') {
      process.stderr.write(`tripdump: process ${pid}: ${c.text} (${c.event})\n`);
      continue;
    }
    if (table.has(key(c))) {
      flush();
      if (count && intervals >= count) break;
    }
    table.set(key(c), c);
    if (values.json) out.write(`${JSON.stringify({ pid, ...c })}\n`);
  }
  if (!signal.aborted && (count === 0 || intervals < count)) flush();
  return EXIT.ok;
}
