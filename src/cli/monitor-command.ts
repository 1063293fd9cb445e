// Runs the ProcDump-style command: settings block, one line per trigger firing and per dump, a summary,
// and the quit semantics (Ctrl-C or SIGTERM stops everything within one sweep and cancels a dump in flight).
import { spawn } from 'node:child_process';
import { DumpAction } from '../actions/dump.js';
import { GCORE_MISSING, gcoreOnPath } from '../actions/gcore.js';
import { pidsNamed, processName } from '../dump/naming.js';
import { AbortError, UsageError } from '../errors.js';
import { Monitor, type MonitorEvent, type TargetSpec } from '../monitor/monitor.js';
import { plural } from '../plural.js';
import { EXCEPTION_DUMP_NOTE } from '../runtimes/dotnet/triggers.js';
import { nodeActions } from '../runtimes/node/actions.js';
import { EXIT, interruptSignal, requireProcess } from './common.js';
import { dumpWriterOf } from './dotnet-switches.js';
import { escapeControl, toJson } from './format.js';
import { logLine } from './output.js';
import { PROCDUMP_USAGE, type ProcdumpConfig, parseProcdumpArgs, settingsBlock } from './procdump.js';

/** -log: stdout lines, or one `logger` child fed line by line (Node has no syslog client). */
function tracer(kind: ProcdumpConfig['log']): ((line: string) => void) | undefined {
  if (kind === 'stdout') return (line) => process.stdout.write(line);
  if (kind !== 'syslog') return undefined;
  const logger = spawn('logger', ['-t', 'tripdump'], { stdio: ['pipe', 'ignore', 'ignore'] });
  logger.on('error', () => {});
  logger.stdin.on('error', () => {});
  process.once('exit', () => logger.stdin.end());
  return (line) => logger.stdin.write(line);
}

/** ProcDump's bare process name: the one running process of that name, looked up once. */
function lookUp(name: string): number {
  const pids = pidsNamed(name);
  if (pids.length === 0)
    throw new UsageError(`No process matching the specified name (${name}) can be found.`, 'NAME');
  if (pids.length > 1)
    throw new UsageError(
      `${pids.length} processes are named ${name} (pids ${pids.slice(0, 10).join(', ')}${pids.length > 10 ? ', ...' : ''}): give one PID, or -w ${name} to monitor every one`,
      'NAME',
    );
  return pids[0]!;
}

export async function monitorCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  const config = parseProcdumpArgs(argv);
  if (!config) {
    out.write(PROCDUMP_USAGE);
    return EXIT.ok;
  }
  // Before the target is looked at, as ProcDump does: the message is the same whatever the pid.
  if (config.gcore && !gcoreOnPath()) {
    out.write(logLine('ERROR', GCORE_MISSING));
    return EXIT.usage;
  }
  const target: TargetSpec =
    'lookup' in config.target
      ? { pid: lookUp(config.target.lookup) }
      : 'pid' in config.target
        ? { pid: requireProcess(config.target.pid) }
        : config.target;
  const signal = interruptSignal();
  const trace = tracer(config.log);
  const processLine =
    'pid' in target
      ? `${'Process:'.padEnd(40)}${processName(target.pid)} (${target.pid})\n`
      : 'name' in target
        ? `${'Process Name:'.padEnd(40)}${escapeControl(target.name)}\n`
        : `${'Process Group:'.padEnd(40)}${target.pgid}\n`;
  const dump = new DumpAction({
    dir: config.out.dir,
    file: config.out.file,
    mode: config.mode,
    filter: config.filter,
    overwrite: config.overwrite,
    historyDir: config.historyDir,
    writer: config.gcore ? 'gcore' : 'native',
    dotnetType: config.dotnetType,
    procdumpDotnetNames: true,
  });
  const monitor = new Monitor({
    target,
    triggers: config.triggers,
    actions: config.node
      ? nodeActions(dump, {
          ...config.out,
          overwrite: config.overwrite,
          historyDir: config.historyDir,
          ...config.node,
        })
      : [dump],
    count: config.count,
    cooldownMs: config.cooldownMs,
    pollMs: config.pollMs,
    sustainMs: config.sustainMs,
    // -log traces every sample as it is taken.
    live: trace !== undefined,
    signal,
  });
  let failures = 0;
  let started = false;
  let exceptionNoted = false;
  monitor.on((e: MonitorEvent) => {
    switch (e.type) {
      // Said once every trigger watches the target: an event from then on is never missed.
      case 'armed':
        if (!started) {
          const writer = 'pid' in target ? dumpWriterOf(target.pid, config.filter) : undefined;
          out.write(
            `${settingsBlock(config, processLine, writer)}\nPress Ctrl-C to end monitoring without terminating the process(es).\n\n`,
          );
          started = true;
        }
        if (!('pid' in target)) out.write(logLine('INFO', `Monitoring ${e.target.name} (${e.target.pid})`));
        break;
      case 'sample':
        trace?.(logLine('INFO', `${e.target.name} (${e.target.pid}): ${toJson(e.record)}`));
        break;
      case 'fire': {
        const thrown = (e.firing.details as { time?: unknown } | undefined)?.time;
        const late =
          e.firing.tag === 'exception' && typeof thrown === 'number'
            ? ` (${Math.max(0, Date.now() - thrown).toFixed(0)} ms after the throw)`
            : '';
        out.write(logLine('INFO', `Trigger: ${e.firing.reason} on process ID: ${e.target.pid}${late}`));
        if (e.firing.tag === 'exception' && !exceptionNoted) {
          exceptionNoted = true;
          out.write(logLine('INFO', EXCEPTION_DUMP_NOTE));
        }
        break;
      }
      case 'action':
        // An output a firing does not want (nodeActions) says nothing.
        if (e.message) out.write(logLine('INFO', e.message));
        break;
      case 'error':
        if (e.error instanceof AbortError) {
          out.write(
            logLine('INFO', `${e.kind} of process ${e.target.pid} cancelled: nothing was left behind`),
          );
          break;
        }
        failures++;
        out.write(logLine('ERROR', `${e.kind} of process ${e.target.pid} failed: ${e.error.message}`));
        break;
      case 'exit':
        out.write(logLine('INFO', `Process exited: ${e.target.name} (${e.target.pid})`));
        break;
    }
  });
  if (!('pid' in target)) {
    out.write(`${settingsBlock(config, processLine)}\nWaiting for processes to launch; Ctrl-C to stop.\n\n`);
    started = true;
  }
  const summary = await monitor.run();
  const files = summary.written;
  const why = {
    done: failures ? 'every trigger has fired' : 'all dumps written',
    exited: 'the target exited',
    aborted: 'interrupted',
    failed: summary.failures
      .map(
        (f) =>
          `the ${f.kind} trigger could not watch ${f.target.name} (${f.target.pid}), which still runs: ${f.error.message}`,
      )
      .join('; '),
  }[summary.reason];
  out.write(
    logLine(
      'INFO',
      `Stopped (${why}${failures && summary.reason !== 'failed' ? `, ${failures} failed` : ''}): ${plural(files.length, 'dump')} written${files.length ? `: ${files.join(', ')}` : ''}`,
    ),
  );
  return failures || summary.reason === 'failed' ? EXIT.failure : EXIT.ok;
}
