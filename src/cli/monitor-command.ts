// Runs the ProcDump-style command: settings block, one line per trigger firing and per dump, a summary,
// and the quit semantics (Ctrl-C or SIGTERM stops everything within one sweep and cancels a dump in flight).
import { spawn } from 'node:child_process';
import { DumpAction } from '../actions/dump.js';
import { processName } from '../dump/naming.js';
import { AbortError } from '../errors.js';
import { Monitor, type MonitorEvent } from '../monitor/monitor.js';
import { nodeActions } from '../runtimes/node/actions.js';
import { EXIT, interruptSignal } from './common.js';
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

export async function monitorCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  const config = parseProcdumpArgs(argv);
  if (!config) {
    out.write(PROCDUMP_USAGE);
    return EXIT.ok;
  }
  const signal = interruptSignal();
  const trace = tracer(config.log);
  const { target } = config;
  const processLine =
    'pid' in target
      ? `${'Process:'.padEnd(40)}${processName(target.pid)} (${target.pid})\n`
      : 'name' in target
        ? `${'Process Name:'.padEnd(40)}${target.name}\n`
        : `${'Process Group:'.padEnd(40)}${target.pgid}\n`;
  const dump = new DumpAction({
    dir: config.out.dir,
    file: config.out.file,
    mode: config.mode,
    filter: config.filter,
    overwrite: config.overwrite,
  });
  const monitor = new Monitor({
    target,
    triggers: config.triggers,
    actions: config.node
      ? nodeActions(dump, { ...config.out, overwrite: config.overwrite, ...config.node })
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
  monitor.on((e: MonitorEvent) => {
    switch (e.type) {
      case 'target':
        if (!started) {
          out.write(
            `${settingsBlock(config, processLine)}\nPress Ctrl-C to end monitoring without terminating the process(es).\n\n`,
          );
          started = true;
        }
        if (!('pid' in target)) out.write(logLine('INFO', `Monitoring ${e.target.name} (${e.target.pid})`));
        break;
      case 'sample':
        trace?.(logLine('INFO', `${e.target.name} (${e.target.pid}): ${JSON.stringify(e.record)}`));
        break;
      case 'fire':
        out.write(logLine('INFO', `Trigger: ${e.firing.reason} on process ID: ${e.target.pid}`));
        break;
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
  const files = summary.written.filter((f) => !f.endsWith('.json'));
  const why = { done: 'all dumps written', exited: 'the target exited', aborted: 'interrupted' }[
    summary.reason
  ];
  out.write(
    logLine(
      'INFO',
      `Stopped (${why}): ${files.length} dump${files.length === 1 ? '' : 's'} written${files.length ? `: ${files.join(', ')}` : ''}`,
    ),
  );
  return failures ? EXIT.failure : EXIT.ok;
}
