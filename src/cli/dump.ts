// `tripdump dump PID [FILE|DIR] [--mode stop|snapshot] [--filter MASK] [--overwrite] [--json]`: one core
// dump, now. Also home of the output path rules every command follows (outputTarget).
import { accessSync, constants, lstatSync, type Stats, statSync } from 'node:fs';
import path from 'node:path';
import type { DumpMode } from '../dump/core.js';
import { dumpPath, processName } from '../dump/naming.js';
import { duringDump, notDumpable, UsageError } from '../errors.js';
import { plural } from '../plural.js';
import { hasDiagnosticsSocket, parseDumpType, writeRuntimeAwareDump } from '../runtimes/dotnet/dump.js';
import { checkPid } from '../sampler/sampler.js';
import { EXIT, interruptSignal, parseMask, parseOptions, requireProcess } from './common.js';
import { toJson } from './format.js';
import { progressBar } from './output.js';

export const DUMP_USAGE = `Usage: tripdump dump PID [FILE|DIR] [options]

Writes an ELF core of a running process, without gdb. Default name (in DIR, default the current
folder): <name>_manual_<yymmdd_HHMMSS>.<pid>, as ProcDump names it, or <name>_<type>_<yymmdd_HHMMSS>.<pid>
when a .NET runtime writes a dump of that --type. A path ending in / is a folder and must exist; FILE
is written under exactly that name, in an existing folder.

  --mode snapshot|stop  snapshot (default): the target pauses only while a copy-on-write child is
                        forked, which is then dumped; stop: the target stays stopped for the whole dump
  --filter MASK         coredump_filter bits, hex from 0 to 0x1ff (33 or 0x33; default: the target's own)
  --type TYPE           a .NET process is dumped by its own runtime: normal, withheap, triage or full
                        (default full); a process whose runtime cannot gets the ptrace core instead
  --overwrite           replace FILE if it exists (a regular file only, never a symlink)
  --json                print the result as JSON
`;

/** A path's stat, or undefined when there is nothing there; a name too long to exist is refused. */
function stat(file: string, option: string): Stats | undefined {
  try {
    return statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENAMETOOLONG') throw tooLong(file, option);
    return undefined;
  }
}

/** Quoted for a message: long names cut to their first 40 characters. */
function quote(text: string): string {
  return `'${text.length > 40 ? `${text.slice(0, 40)}…` : text}'`;
}

/** The kernel said ENAMETOOLONG about `file`: which part is too long, as a usage error. */
function tooLong(file: string, option: string): UsageError {
  const part = file.split('/').find((p) => Buffer.byteLength(p) > 255);
  return new UsageError(
    part !== undefined
      ? `${option}: the name ${quote(part)} is ${Buffer.byteLength(part)} bytes; a file or folder name holds at most 255 (ENAMETOOLONG)`
      : `${option}: the path ${quote(file)} is too long for the file system (${Buffer.byteLength(file)} bytes; ENAMETOOLONG)`,
    option,
  );
}

/** A file name made from a folder and a name (a default name, or FILE): refused if the kernel finds it too long. */
export function checkNameLength(file: string, option: string): void {
  try {
    lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENAMETOOLONG') throw tooLong(file, option);
  }
}

/**
 * Where output goes, by the path rules of every command: an existing folder, or a file name in an
 * existing folder. A path ending in '/' means a folder, which must exist; an existing non-folder is never
 * taken for one; an empty path is an error; the folder must be writable. Errors name `option` and the path.
 */
export function outputTarget(arg: string | undefined, option: string): { dir: string; file?: string } {
  if (arg === undefined) return { dir: '.' };
  if (arg === '')
    throw new UsageError(
      `${option}: an empty path names no file or folder (use . for the current folder)`,
      option,
    );
  const st = stat(arg, option);
  // stat("afile/") fails with ENOTDIR: look at the name without its slashes to tell "not a folder".
  if (arg.endsWith('/') && !st?.isDirectory())
    throw new UsageError(
      stat(arg.replace(/\/+$/, '') || '/', option)
        ? `${option}: '${arg}' ends in '/' but is not a folder`
        : `${option}: folder '${arg}' does not exist (a path ending in '/' is a folder)`,
      option,
    );
  const out = st?.isDirectory() ? { dir: arg } : { dir: path.dirname(arg), file: path.basename(arg) };
  if (out.file !== undefined) {
    const dir = stat(out.dir, option);
    if (!dir) throw new UsageError(`${option}: folder '${out.dir}' does not exist`, option);
    if (!dir.isDirectory()) throw new UsageError(`${option}: '${out.dir}' is not a folder`, option);
  }
  try {
    accessSync(out.dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new UsageError(`${option}: folder '${out.dir}' is not writable`, option);
  }
  return out;
}

/** What an existing FILE allows: nothing without --overwrite, and with it a regular file only. */
function checkExisting(file: string, overwrite: boolean): void {
  let st: Stats;
  try {
    st = lstatSync(file);
  } catch {
    return;
  }
  if (!overwrite) throw new UsageError(`'${file}' already exists (--overwrite replaces it)`, 'FILE');
  if (!st.isFile())
    throw new UsageError(
      `'${file}' is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}: --overwrite replaces a regular file only`,
      'FILE',
    );
}

export async function dumpCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  const { values, positionals } = parseOptions(argv, {
    mode: { type: 'string' },
    filter: { type: 'string' },
    type: { type: 'string' },
    overwrite: { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
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
  requireProcess(pid);
  // A kernel thread or a zombie can never be dumped: refused as a pid that does not exist is.
  const why = notDumpable(pid);
  if (why) throw new UsageError(why.message, 'PID');
  const now = new Date();
  const manual = dumpPath(target, processName(pid), 'manual', pid, now, 0);
  // A runtime's dump says its type where a ptrace core says `manual`: the two hold different things.
  const file = target.file
    ? path.join(target.dir, target.file)
    : hasDiagnosticsSocket(pid)
      ? dumpPath(target, processName(pid), dotnetType ?? 'full', pid, now, 0)
      : manual;
  checkNameLength(file, 'FILE|DIR');
  checkExisting(file, values.overwrite === true);
  const signal = interruptSignal();
  const bar = values.json ? progressBar({ isTTY: false } as NodeJS.WriteStream) : progressBar(process.stderr);
  try {
    const r = await writeRuntimeAwareDump(pid, file, {
      dotnetType,
      ...(target.file ? {} : { fallbackFile: manual }),
      ...(values.mode ? { mode: values.mode as DumpMode } : {}),
      ...(filter !== undefined ? { filter } : {}),
      overwrite: values.overwrite === true,
      signal,
      onProgress: bar.update,
    }).catch((e: unknown) => {
      throw duringDump(e, pid);
    });
    bar.end();
    if (values.json) out.write(`${toJson(r)}\n`);
    else if (r.writer === 'dotnet')
      out.write(
        `Core dump written: ${r.path}\n  by the .NET ${r.runtimeVersion ?? ''} runtime, type ${r.dotnetType}: ${plural(r.threads, 'thread')}, ` +
          `${(r.bytesWritten / 2 ** 20).toFixed(1)} MiB (${(r.bytesOnDisk / 2 ** 20).toFixed(1)} MiB on disk) in ${(r.pauseMs / 1000).toFixed(2)} s\n`,
      );
    else {
      out.write(
        `Core dump written: ${r.path}\n  ${plural(r.threads, 'thread')}, ${plural(r.mappingsWritten, 'mapping')} (${r.mappingsSkipped} skipped), ` +
          `${(r.bytesWritten / 2 ** 20).toFixed(1)} MiB (${(r.bytesOnDisk / 2 ** 20).toFixed(1)} MiB on disk), ` +
          `target paused ${r.pauseMs.toFixed(1)} ms in ${r.mode} mode\n`,
      );
      for (const w of r.warnings) out.write(`  warning: ${w}\n`);
    }
    return EXIT.ok;
  } finally {
    bar.end();
  }
}
