// ProcDump's -usegcore: the core is written by gdb's gcore instead of tripdump's writer. gcore writes into
// a private folder (mode 0700) beside the destination; the file is made 0600 and given its final name only
// when complete, by the same rules as every other output (no replacing without overwrite, never through a
// symlink). gdb stops the target for the whole dump and detaches when it ends or is told to quit.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { chmod, link, lstat, mkdtemp, open, rename, rm, stat, unlink } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import type { CoreDumpOptions, CoreDumpResult } from '../dump/core.js';
import { AbortError, notDumpable, ProcessGoneError, SystemError, UsageError } from '../errors.js';

/** ProcDump's words when gcore is missing (its missing_gcore scenario looks for them). */
export const GCORE_MISSING =
  'failed to locate gcore binary in $PATH. Check that gdb/gcore is installed and configured on your system (apt-get install gdb).';

/** Whether an executable `gcore` is on PATH. */
export function gcoreOnPath(env: NodeJS.ProcessEnv = process.env): boolean {
  for (const dir of (env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      if (readdirSync(dir).includes('gcore')) return true;
    } catch {
      // a PATH entry that is not a readable folder
    }
  }
  return false;
}

function fileError(code: 'EEXIST' | 'ELOOP' | 'EISDIR', file: string, pid: number): SystemError {
  return new SystemError({ errno: -constants.errno[code], code, syscall: 'open', path: file, pid });
}

/** The final-name rule of every output (native/dump/output_file.h): overwrite replaces a regular file only. */
async function checkFinalName(file: string, overwrite: boolean, pid: number): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!overwrite) throw fileError('EEXIST', file, pid);
  if (st.isSymbolicLink()) throw fileError('ELOOP', file, pid);
  if (st.isDirectory()) throw fileError('EISDIR', file, pid);
  if (!st.isFile()) throw fileError('EEXIST', file, pid);
}

/** PT_LOAD segments of an ELF64 core, with file data and without. */
async function countSegments(file: string): Promise<{ written: number; skipped: number }> {
  const fh = await open(file, 'r');
  try {
    const h = Buffer.alloc(64);
    await fh.read(h, 0, 64, 0);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2) return { written: 0, skipped: 0 };
    const phoff = Number(h.readBigUInt64LE(32));
    const size = h.readUInt16LE(54);
    const count = h.readUInt16LE(56);
    const ph = Buffer.alloc(size * count);
    await fh.read(ph, 0, ph.length, phoff);
    let written = 0;
    let skipped = 0;
    for (let i = 0; i < count; i++) {
      if (ph.readUInt32LE(i * size) !== 1) continue; // PT_LOAD
      if (ph.readBigUInt64LE(i * size + 32) > 0n) written++;
      else skipped++;
    }
    return { written, skipped };
  } finally {
    await fh.close();
  }
}

/** Writes a core of `pid` to `file` with gdb's gcore. Options: overwrite and signal (mode and filter are gdb's). */
export async function writeGcoreDump(
  pid: number,
  file: string,
  options: CoreDumpOptions = {},
): Promise<CoreDumpResult> {
  if (file === '' || file.endsWith('/')) throw new UsageError(`'${file}' names no file`, 'path');
  const overwrite = options.overwrite === true;
  const { signal } = options;
  await checkFinalName(file, overwrite, pid);
  if (signal?.aborted) throw new AbortError('the dump was aborted before it started');
  const why = notDumpable(pid);
  if (why) throw why;
  let threads = 0;
  try {
    threads = readdirSync(`/proc/${pid}/task`).length;
  } catch {
    throw new ProcessGoneError({ errno: -constants.errno.ESRCH, code: 'ESRCH', syscall: 'open', pid });
  }
  const tmpdir = await mkdtemp(path.join(path.dirname(file), '.tripdump-gcore-'));
  try {
    const prefix = path.join(tmpdir, 'core');
    const t0 = performance.now();
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      // Its own process group: gcore is a script that runs gdb, and a cancel must reach both.
      const child = spawn('gcore', ['-o', prefix, String(pid)], {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        output += d.toString();
      });
      // SIGTERM makes gdb quit, and quitting detaches from an attached process: the target runs on.
      const cancel = () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      };
      signal?.addEventListener('abort', cancel, { once: true });
      child.once('error', (e) => {
        signal?.removeEventListener('abort', cancel);
        reject(e);
      });
      child.once('close', (code) => {
        signal?.removeEventListener('abort', cancel);
        resolve({ code, output });
      });
    });
    const pauseMs = performance.now() - t0;
    if (signal?.aborted) throw new AbortError(`the dump of process ${pid} was aborted; no file was left`);
    const written = `${prefix}.${pid}`;
    const made = await stat(written).catch(() => undefined);
    if (code !== 0 || !made) {
      if (!readdirSafe(`/proc/${pid}`))
        throw new ProcessGoneError(
          { errno: -constants.errno.ESRCH, code: 'ESRCH', syscall: 'gcore', pid },
          'exited during the dump',
        );
      const last = output.trim().split('\n').slice(-3).join(' | ');
      throw new SystemError(
        { errno: -constants.errno.EIO, code: 'EIO', syscall: 'gcore', pid },
        `gcore failed to write a core of process ${pid} (exit ${code}): ${last}`,
      );
    }
    await chmod(written, 0o600);
    if (overwrite) {
      await checkFinalName(file, true, pid);
      await rename(written, file);
    } else {
      try {
        await link(written, file); // never replaces: EEXIST if the name was taken meanwhile
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw fileError('EEXIST', file, pid);
        throw e;
      }
      await unlink(written);
    }
    const st = await stat(file);
    const segments = await countSegments(file);
    return {
      path: file,
      bytesWritten: st.size,
      bytesOnDisk: st.blocks * 512,
      threads,
      mappingsWritten: segments.written,
      mappingsSkipped: segments.skipped,
      pauseMs,
      // gdb stops the target for the whole dump: one phase.
      pausePhases: [{ phase: 'write', ms: pauseMs }],
      mode: 'stop',
      warnings: ['written by gdb gcore: the target was stopped for the whole dump'],
    };
  } finally {
    await rm(tmpdir, { recursive: true, force: true });
  }
}

function readdirSafe(dir: string): boolean {
  try {
    readdirSync(dir);
    return true;
  } catch {
    return false;
  }
}
