// `tripdump node snapshot|report|stack|profile PID ...`: what Chrome DevTools gives for a Node process,
// taken from outside through its inspector (opened with SIGUSR1, closed again after).
import path from 'node:path';
import { dumpPath, processName } from '../dump/naming.js';
import { SystemError, UsageError } from '../errors.js';
import {
  captureNodeStack,
  formatNodeStack,
  type NodeFileResult,
  writeCpuProfile,
  writeHeapSnapshot,
  writeNodeReport,
} from '../runtimes/node/actions.js';
import { executable, isNodeProcess } from '../runtimes/node/detect.js';
import { nodeInspectors } from '../runtimes/node/inspector.js';
import { checkPid } from '../sampler/sampler.js';
import { EXIT, interruptSignal, parseNumber, parseOptions, RANGE, requireProcess } from './common.js';
import { checkNameLength, outputTarget } from './dump.js';
import { escapeControl, toJson } from './format.js';

export const NODE_USAGE = `Usage: tripdump node <command> PID [FILE|DIR] [options]

Diagnostics of a running Node.js process, taken from outside through its inspector: tripdump opens it
with SIGUSR1 and closes it again when done (an inspector that was already open is left open). The
target must handle SIGUSR1 (not started with --disable-sigusr1).

Commands:
  snapshot PID [FILE|DIR]             heap snapshot (.heapsnapshot, loads in Chrome DevTools), streamed
                                      to disk; the target is busy in V8 while it is taken
  report PID [FILE|DIR]               diagnostic report (process.report) as JSON
  stack PID [--json]                  the JavaScript stack of the main thread, printed: a busy or blocked
                                      loop is paused where it is, for milliseconds, and resumed
  profile PID --seconds N [FILE|DIR]  CPU profile of N seconds (.cpuprofile)

Default name (in DIR, default the current folder): <name>_manual_<yymmdd_HHMMSS>.<pid> plus
.heapsnapshot, .report.json or .cpuprofile.

Options:
  --seconds N       profile length
  --overwrite       replace FILE if it exists
  --json            print the result as JSON
  -h, --help        this text
`;

const EXTENSIONS = { snapshot: '.heapsnapshot', report: '.report.json', profile: '.cpuprofile' } as const;

export async function nodeCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  const { values, positionals } = parseOptions(argv, {
    seconds: { type: 'string' },
    overwrite: { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  const [command, pidArg, where, ...extra] = positionals;
  if (values.help || command === 'help') {
    out.write(NODE_USAGE);
    return EXIT.ok;
  }
  if (command === undefined)
    throw new UsageError('which command? snapshot, report, stack or profile', 'command');
  if (command !== 'snapshot' && command !== 'report' && command !== 'stack' && command !== 'profile')
    throw new UsageError(`unknown command '${command}': snapshot, report, stack or profile`, 'command');
  if (pidArg === undefined) throw new UsageError('which process? give a PID', 'PID');
  if (!/^\d+$/.test(pidArg))
    throw new UsageError(`'${pidArg}' is not a pid (a positive whole number)`, 'PID');
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
  if (command === 'stack' && where !== undefined)
    throw new UsageError(`stack prints the stack; unexpected argument '${where}'`);
  let seconds: number | undefined;
  if (command === 'profile') {
    if (values.seconds === undefined) throw new UsageError('profile needs --seconds N', '--seconds');
    seconds = parseNumber('--seconds', values.seconds, 0.1, RANGE.seconds[1]);
  } else if (values.seconds !== undefined) throw new UsageError('--seconds is for profile only', '--seconds');
  const pid = requireProcess(checkPid(Number(pidArg)));
  if (!isNodeProcess(pid))
    throw new UsageError(
      `process ${pid} is not a Node.js process (${executable(pid) ?? 'executable unreadable'})`,
      'PID',
    );
  const target = command === 'stack' ? undefined : outputTarget(where, 'FILE|DIR');
  const signal = interruptSignal();
  if (command === 'stack' || !target) {
    // A lease of our own: the stack is printed as soon as it is taken, before the inspector closes
    // (which waits for a blocked loop to go round, or leaves that to the guard).
    const lease = await nodeInspectors.acquire(pid, signal);
    try {
      const s = await captureNodeStack(pid, { signal });
      out.write(values.json ? `${toJson(s)}\n` : formatNodeStack(s, escapeControl));
    } finally {
      await lease.release();
    }
    return EXIT.ok;
  }
  const file = target.file
    ? path.join(target.dir, target.file)
    : `${dumpPath(target, processName(pid), 'manual', pid, new Date(), 0)}${EXTENSIONS[command]}`;
  checkNameLength(file, 'FILE|DIR');
  const overwrite = values.overwrite === true;
  let r: NodeFileResult;
  try {
    r =
      command === 'snapshot'
        ? await writeHeapSnapshot(pid, file, { signal, overwrite })
        : command === 'report'
          ? await writeNodeReport(pid, file, { signal, overwrite })
          : await writeCpuProfile(pid, file, { signal, overwrite, seconds: seconds! });
  } catch (e) {
    if (e instanceof SystemError && e.code === 'EEXIST')
      throw new UsageError(`'${file}' already exists (--overwrite replaces it)`, 'FILE');
    throw e;
  }
  if (values.json) out.write(`${toJson(r)}\n`);
  else {
    const what = { snapshot: 'Heap snapshot', report: 'Diagnostic report', profile: 'CPU profile' }[command];
    out.write(
      `${what} written: ${r.path} (${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${(r.durationMs / 1000).toFixed(1)} s)\n`,
    );
  }
  return EXIT.ok;
}
