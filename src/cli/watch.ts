// `tripdump watch [PID...|--all] --on-crash ACTION...`: records the watched processes and the host (the
// flight recorder) and, when the crash handler reports a crash, runs the actions bound to it.
import type { ActionContext } from '../actions/action.js';
import { DumpAction } from '../actions/dump.js';
import { ExecAction } from '../actions/exec.js';
import { writeFileSafely } from '../actions/history.js';
import type { CrashInfo } from '../crash/protocol.js';
import { DEFAULT_SOCKET } from '../crash/protocol.js';
import { CrashTrigger } from '../crash/trigger.js';
import { flightRecorderPath, processName, sanitize } from '../dump/naming.js';
import { UsageError } from '../errors.js';
import { FlightRecorder } from '../monitor/recorder.js';
import { checkPid } from '../sampler/sampler.js';
import { EXIT, interruptSignal, parseInteger, parseOptions, RANGE, requireProcess } from './common.js';
import { outputTarget } from './dump.js';
import { toJson } from './format.js';
import { logLine } from './output.js';

/** --history: samples kept per recorded process (every process with --all). */
const MAX_HISTORY = 3_600;

export const WATCH_USAGE = `Usage: tripdump watch [PID...|--all] --on-crash ACTION [--on-crash ACTION...] [options]

Records the given processes (or all of them) and the host, and runs actions each time the crash handler
(tripdump crash-handler install) reports a crash. Actions run in order:
  snapshot        write the flight recorder (the last samples of every recorded process and of the host,
                  and the crash) to DIR/flight_<exe>_<yymmdd_HHMMSS>.<pid>.json
  dump:parent     write a core of the crashing process's parent (which is still running)
  dump:PID        write a core of another process (which must exist when watching starts)
  exec:CMD ARGS   run a command (no shell; {pid} {exe} {signal} {path} are replaced)
  stop            end watching after this crash

  --exe NAME      only crashes of this executable
  --uid N         only crashes of this user (0 to 4,294,967,294)
  --signal N      only crashes from this signal (1 to 64)
  --dir DIR       where files go (an existing folder; default .)
  --interval MS   recording interval, 1 to 86,400,000 (default 1000)
  --history N     samples kept per process, 1 to ${MAX_HISTORY.toLocaleString('en-US')} (default 60)
  --socket PATH   the handler's notification socket (default ${DEFAULT_SOCKET})
Each option may be given once; --on-crash as often as needed.
`;

type CrashAction =
  | { kind: 'snapshot' | 'stop' | 'dump-parent' }
  | { kind: 'dump'; pid: number }
  | { kind: 'exec'; argv: string[] };

function parseAction(a: string): CrashAction {
  if (a === 'snapshot' || a === 'stop') return { kind: a };
  if (a === 'dump:parent') return { kind: 'dump-parent' };
  if (a.startsWith('dump:')) {
    const what = '--on-crash dump:PID';
    return { kind: 'dump', pid: requireProcess(checkPid(parseInteger(what, a.slice(5), 1), what), what) };
  }
  if (a.startsWith('exec:')) {
    const argv = a.slice(5).trim().split(/\s+/).filter(Boolean);
    if (!argv.length) throw new UsageError(`--on-crash exec: needs a command, got '${a}'`, '--on-crash');
    return { kind: 'exec', argv };
  }
  throw new UsageError(
    `unknown --on-crash action '${a}' (snapshot, stop, dump:parent, dump:PID, exec:CMD)`,
    '--on-crash',
  );
}

export async function watchCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  const { values, positionals } = parseOptions(argv, {
    all: { type: 'boolean' },
    'on-crash': { type: 'string', multiple: true },
    exe: { type: 'string' },
    uid: { type: 'string' },
    signal: { type: 'string' },
    dir: { type: 'string' },
    interval: { type: 'string' },
    history: { type: 'string' },
    socket: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out.write(WATCH_USAGE);
    return EXIT.ok;
  }
  const actions = (values['on-crash'] ?? []).map(parseAction);
  if (!actions.length) throw new UsageError('nothing to do on a crash: give --on-crash ACTION', '--on-crash');
  const pids = positionals.map((p) => {
    if (!/^\d+$/.test(p)) throw new UsageError(`'${p}' is not a pid`, 'PID');
    return requireProcess(checkPid(Number(p)));
  });
  if (values.all && pids.length) throw new UsageError('give either PIDs or --all, not both', '--all');
  const dir = outputTarget(values.dir ?? '.', '--dir');
  if (dir.file) throw new UsageError(`--dir: '${values.dir}' is not a folder`, '--dir');
  const intervalMs =
    values.interval === undefined ? 1000 : parseInteger('--interval', values.interval, ...RANGE.intervalMs);
  const historySize =
    values.history === undefined ? 60 : parseInteger('--history', values.history, 1, MAX_HISTORY);
  const uid = values.uid === undefined ? undefined : parseInteger('--uid', values.uid, 0, 4_294_967_294);
  const sig = values.signal === undefined ? undefined : parseInteger('--signal', values.signal, 1, 64);

  const signal = interruptSignal();
  const stop = new AbortController();
  const both = AbortSignal.any([signal, stop.signal]);
  const recorder = new FlightRecorder({
    pids: values.all || !pids.length ? 'all' : pids,
    intervalMs,
    historySize,
    signal: both,
  });
  const trigger = new CrashTrigger({
    socketPath: values.socket ?? DEFAULT_SOCKET,
    ...(values.exe ? { exe: values.exe } : {}),
    ...(uid !== undefined ? { uids: [uid] } : {}),
    ...(sig !== undefined ? { signals: [sig] } : {}),
    onError: (e) => out.write(logLine('WARN', `crash notifications: ${e.message}`)),
  });
  let failures = 0;
  let queue = Promise.resolve();
  trigger.subscribe((info) => {
    // One crash at a time, in arrival order.
    queue = queue.then(() => onCrash(info)).catch(() => {});
  }, both);
  await trigger.ready.catch((e: Error) => {
    stop.abort();
    throw e;
  });
  out.write(
    `Watching ${values.all || !pids.length ? 'every process' : `pids ${pids.join(', ')}`}; waiting for crashes on ${values.socket ?? DEFAULT_SOCKET}. Ctrl-C to stop.\n`,
  );

  async function onCrash(info: CrashInfo): Promise<void> {
    out.write(
      logLine(
        'INFO',
        `Crash: ${info.exeName} (${info.pid}) uid ${info.uid} signal ${info.signal}${info.coreFile ? `, core ${info.coreFile}` : ''}`,
      ),
    );
    const parent = recorder.history(info.pid).at(-1)?.record.ppid;
    const ctx = (pid: number, name: string): ActionContext => ({
      target: { pid, startTime: Number.NaN, name },
      firing: {
        met: true,
        tag: 'crash',
        value: info.signal,
        threshold: 0,
        reason: `${info.exeName} (${info.pid}) crashed with signal ${info.signal}`,
      },
      time: new Date(),
      history: recorder.history(pid),
      signal: both,
      written: new Map(info.coreFile ? [['dump', info.coreFile]] : []),
    });
    for (const a of actions) {
      try {
        if (a.kind === 'stop') {
          stop.abort();
          continue;
        }
        if (a.kind === 'snapshot') {
          const body = `${toJson({ version: 1, crash: { ...info, exeNameRaw: undefined }, ...recorder.recording() }, 2)}\n`;
          const when = new Date();
          // Never over an earlier recording: a second crash of the same pid in one second gets _1.
          for (let n = 0; ; n++) {
            const file = flightRecorderPath(dir.dir, info.exeName, info.pid, when, n);
            try {
              await writeFileSafely(file, body);
              out.write(logLine('INFO', `Flight recorder written: ${file}`));
              break;
            } catch (e) {
              if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 100) throw e;
            }
          }
        } else if (a.kind === 'exec') {
          const argv = a.argv.map((x) =>
            x.replaceAll('{exe}', sanitize(info.exeName)).replaceAll('{signal}', String(info.signal)),
          );
          out.write(
            logLine('INFO', (await new ExecAction(argv).run(ctx(info.pid, sanitize(info.exeName)))).message),
          );
        } else {
          const pid = a.kind === 'dump' ? a.pid : parent;
          if (typeof pid !== 'number' || pid <= 1)
            throw new Error(`the parent of ${info.pid} is not known (record it: watch --all or its pid)`);
          const r = await new DumpAction({ dir: dir.dir }).run(ctx(pid, processName(pid)));
          out.write(logLine('INFO', r.message));
        }
      } catch (e) {
        failures++;
        out.write(
          logLine('ERROR', `${a.kind} after the crash of ${info.pid} failed: ${(e as Error).message}`),
        );
      }
    }
  }

  await recorder.done;
  await queue;
  out.write(logLine('INFO', `Stopped (${signal.aborted ? 'interrupted' : 'stop action'})`));
  return failures ? EXIT.failure : EXIT.ok;
}
