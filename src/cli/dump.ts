// `tripdump dump PID [FILE|DIR] [--mode stop|snapshot] [--filter MASK] [--json]`: one core dump, now.
import { statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { DumpMode } from '../dump/core.js';
import { dumpPath, processName } from '../dump/naming.js';
import { UsageError } from '../errors.js';
import { parseDumpType, writeRuntimeAwareDump } from '../runtimes/dotnet/dump.js';
import { checkPid } from '../sampler/sampler.js';
import { EXIT, interruptSignal, parseMask } from './common.js';
import { progressBar } from './output.js';

export const DUMP_USAGE = `Usage: tripdump dump PID [FILE|DIR] [options]

Writes an ELF core of a running process, without gdb. Default name (in DIR, default the current
folder): <name>_manual_<yymmdd_HHMMSS>.<pid>, as ProcDump names it.

  --mode snapshot|stop  snapshot (default): the target pauses only while a copy-on-write child is
                        forked, which is then dumped; stop: the target stays stopped for the whole dump
  --filter MASK         coredump_filter bits, hex (33 or 0x33; default: the target's own)
  --type TYPE           a .NET process is dumped by its own runtime: normal, withheap, triage or full
                        (default full); a process whose runtime cannot gets the ptrace core instead
  --overwrite           replace FILE if it exists
  --json                print the result as JSON
`;

/** Where a dump goes: an existing folder, or a file in an existing folder. */
export function outputTarget(arg: string | undefined, option: string): { dir: string; file?: string } {
  if (arg === undefined) return { dir: '.' };
  try {
    if (statSync(arg).isDirectory()) return { dir: arg };
  } catch {
    // not there: a file name, whose folder must exist
  }
  const dir = path.dirname(arg);
  try {
    if (!statSync(dir).isDirectory()) throw new Error();
  } catch {
    throw new UsageError(`${option}: folder '${dir}' does not exist`, option);
  }
  return { dir, file: path.basename(arg) };
}

export async function dumpCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  const parse = () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        mode: { type: 'string' },
        filter: { type: 'string' },
        type: { type: 'string' },
        overwrite: { type: 'boolean' },
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
    out.write(DUMP_USAGE);
    return EXIT.ok;
  }
  const [pidArg, where, ...extra] = positionals;
  if (pidArg === undefined) throw new UsageError('which process? give a PID', 'PID');
  if (!/^\d+$/.test(pidArg))
    throw new UsageError(`'${pidArg}' is not a pid (a positive whole number)`, 'PID');
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const pid = checkPid(Number(pidArg));
  if (values.mode !== undefined && values.mode !== 'stop' && values.mode !== 'snapshot')
    throw new UsageError(`--mode must be 'stop' or 'snapshot', got '${values.mode}'`, '--mode');
  const filter = values.filter === undefined ? undefined : parseMask('--filter', values.filter);
  const dotnetType = values.type === undefined ? undefined : parseDumpType(values.type, '--type');
  const target = outputTarget(where, 'FILE|DIR');
  try {
    statSync(`/proc/${pid}`);
  } catch {
    throw new UsageError(`process ${pid} does not exist`, 'PID');
  }
  const file = dumpPath(target, processName(pid), 'manual', pid, new Date(), 0);
  const signal = interruptSignal();
  const bar = values.json ? progressBar({ isTTY: false } as NodeJS.WriteStream) : progressBar(process.stderr);
  try {
    const r = await writeRuntimeAwareDump(pid, file, {
      dotnetType,
      ...(values.mode ? { mode: values.mode as DumpMode } : {}),
      ...(filter !== undefined ? { filter } : {}),
      overwrite: values.overwrite === true,
      signal,
      onProgress: bar.update,
    });
    bar.end();
    if (values.json) out.write(`${JSON.stringify(r)}\n`);
    else if (r.writer === 'dotnet')
      out.write(
        `Core dump written: ${r.path}\n  by the .NET ${r.runtimeVersion ?? ''} runtime, type ${r.dotnetType}: ${r.threads} threads, ` +
          `${(r.bytesWritten / 2 ** 20).toFixed(1)} MiB (${(r.bytesOnDisk / 2 ** 20).toFixed(1)} MiB on disk) in ${(r.pauseMs / 1000).toFixed(2)} s\n`,
      );
    else {
      out.write(
        `Core dump written: ${r.path}\n  ${r.threads} threads, ${r.mappingsWritten} mappings (${r.mappingsSkipped} skipped), ` +
          `${(r.bytesWritten / 2 ** 20).toFixed(1)} MiB (${(r.bytesOnDisk / 2 ** 20).toFixed(1)} MiB on disk), ` +
          `target paused ${r.pauseMs.toFixed(1)} ms in ${r.mode} mode\n`,
      );
    }
    if (!values.json) for (const w of r.warnings) out.write(`  warning: ${w}\n`);
    return EXIT.ok;
  } finally {
    bar.end();
  }
}
