// Dumps written by the .NET runtime itself (GenerateCoreDump3: createdump with the runtime's knowledge of
// its heaps: an idle web app's 18 GB core becomes a 273 MB "full" dump). The runtime writes the file as the
// target's user, relative to the target's cwd and inside its mount namespace, so tripdump gives it a private
// folder the target can write (next to the destination when the target can reach it, else in the target's
// TMPDIR) and then moves the result into place the way every tripdump output appears (docs/design.md §9): mode
// 0600, never through a symlink, under its final name only when complete.
import { constants, lstatSync, readFileSync, statSync } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  link,
  lstat,
  mkdtemp,
  open,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import path from 'node:path';
import { type CoreDumpOptions, type CoreDumpResult, writeCoreDump } from '../../dump/core.js';
import { AbortError, ProcessGoneError, SystemError, UsageError } from '../../errors.js';
import { checkPid } from '../../sampler/sampler.js';
import type { DotnetConnection } from './connection.js';
import { dotnetConnections } from './connection.js';
import { DotnetRuntimeError, DotnetUnavailableError } from './errors.js';
import {
  Command,
  CommandSet,
  encodeMessage,
  isUnknownCommand,
  PayloadReader,
  PayloadWriter,
  request,
} from './ipc.js';
import { locateSocket } from './socket.js';

export const DOTNET_DUMP_TYPES = ['normal', 'withheap', 'triage', 'full'] as const;
export type DotnetDumpType = (typeof DOTNET_DUMP_TYPES)[number];
const TYPE_CODE: Record<DotnetDumpType, number> = { normal: 1, withheap: 2, triage: 3, full: 4 };

export interface DotnetDumpOptions {
  /** What the runtime includes (default 'full', as ProcDump asks): see README. */
  type?: DotnetDumpType;
  overwrite?: boolean;
  /** Aborting stops waiting at once; the runtime's partial file is removed and nothing appears at `path`. */
  signal?: AbortSignal;
  /** How long the runtime may take (default 10 minutes, as dotnet-dump). */
  timeoutMs?: number;
}

export interface DotnetDumpResult {
  path: string;
  type: DotnetDumpType;
  bytesWritten: number;
  bytesOnDisk: number;
  /** From the request to the runtime's answer, ms (createdump keeps the target suspended meanwhile). */
  elapsedMs: number;
  runtimeVersion: string | undefined;
}

export function parseDumpType(value: string, option = 'type'): DotnetDumpType {
  const t = value.toLowerCase() as DotnetDumpType;
  if (!DOTNET_DUMP_TYPES.includes(t))
    throw new UsageError(`${option} must be one of ${DOTNET_DUMP_TYPES.join(', ')}, got '${value}'`, option);
  return t;
}

/** Asks the runtime for a dump at `targetPath` (a path in the target's mount namespace). */
async function generateCoreDump(
  conn: DotnetConnection,
  targetPath: string,
  type: DotnetDumpType,
  options: DotnetDumpOptions,
): Promise<void> {
  const o = { signal: options.signal, timeoutMs: options.timeoutMs ?? 600_000, withMessage: true };
  const payload = (flagsOrDiagnostics: number) =>
    new PayloadWriter().string(targetPath).u32(TYPE_CODE[type]).u32(flagsOrDiagnostics).bytes();
  // GenerateCoreDump3 (.NET 7+) answers with createdump's own message on failure; 2 and 1 for older runtimes.
  const attempts = [
    ['GenerateCoreDump3', Command.generateCoreDump3],
    ['GenerateCoreDump2', Command.generateCoreDump2],
    ['GenerateCoreDump', Command.generateCoreDump],
  ] as const;
  for (const [name, id] of attempts) {
    let reply: Buffer;
    try {
      reply = await request(
        conn.location.path,
        conn.pid,
        name,
        encodeMessage(CommandSet.dump, id, payload(0)),
        o,
      );
    } catch (e) {
      if (isUnknownCommand(e) && id !== Command.generateCoreDump) continue;
      throw e;
    }
    const hr = reply.length >= 4 ? new PayloadReader(reply, conn.pid, `${name} reply`).u32() : 0;
    if (hr !== 0) throw new DotnetRuntimeError(conn.pid, name, hr, undefined);
    return;
  }
}

interface Identity {
  uid: number;
  gids: number[];
}

function identityOf(pid: number): Identity {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const field = (k: string) =>
    (new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
  // The file-system ids decide what the target may create (4th column).
  const uid = field('Uid')[3] ?? field('Uid')[0]!;
  const gid = field('Gid')[3] ?? field('Gid')[0]!;
  return { uid, gids: [gid, ...field('Groups').filter((g) => Number.isFinite(g))] };
}

/** Whether `who` may search every folder on the way to `dir` (what reaching a subfolder of it needs). */
function canTraverse(who: Identity, dir: string): boolean {
  if (who.uid === 0) return true;
  let d = path.resolve(dir);
  for (;;) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(d);
    } catch {
      return false;
    }
    const bit = st.uid === who.uid ? 0o100 : who.gids.includes(st.gid) ? 0o010 : 0o001;
    if (!(st.mode & bit)) return false;
    const up = path.dirname(d);
    if (up === d) return true;
    d = up;
  }
}

/** A folder only the target's user can write: where tripdump reaches it, and as the target names it. */
async function stagingFolder(
  conn: DotnetConnection,
  finalDir: string,
): Promise<{ local: string; inTarget: string }> {
  const who = identityOf(conn.pid);
  const loc = conn.location;
  const me = process.getuid?.() ?? 0;
  const make = async (parent: string) => {
    const local = await mkdtemp(path.join(parent, '.tripdump-dotnet-'));
    if (who.uid !== me) await chown(local, who.uid, who.gids[0]!);
    return local;
  };
  // Next to the destination when the target sees the same tree and may reach it: the dump is then renamed,
  // not copied.
  if (loc.root === '' && canTraverse(who, finalDir)) {
    const local = await make(finalDir);
    return { local, inTarget: path.resolve(local) };
  }
  const local = await make(loc.root + loc.tmpDir);
  return { local, inTarget: path.join(loc.tmpDir, path.basename(local)) };
}

function eexist(file: string): SystemError {
  return new SystemError(
    { errno: -17, code: 'EEXIST', syscall: 'link', path: file },
    `${file} already exists`,
  );
}

/** Moves the runtime's file to `file`: rename/link when on the same file system, else a copy. */
async function place(src: string, file: string, overwrite: boolean): Promise<void> {
  const me = process.getuid?.();
  const st = await lstat(src);
  if (!st.isFile())
    throw new SystemError(
      { errno: -22, code: 'EINVAL', syscall: 'lstat', path: src },
      `the runtime left no regular file at ${src}`,
    );
  if (me !== undefined && st.uid !== me) await chown(src, me, process.getgid?.() ?? 0);
  await chmod(src, 0o600);
  try {
    if (overwrite) await rename(src, file);
    else await link(src, file);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw eexist(file);
    if (code !== 'EXDEV') throw e;
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await copyFile(src, tmp, constants.COPYFILE_EXCL);
  try {
    await chmod(tmp, 0o600);
    if (overwrite) await rename(tmp, file);
    else {
      await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
        throw e.code === 'EEXIST' ? eexist(file) : e;
      });
      await unlink(tmp);
    }
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Asks the .NET runtime of `pid` for a dump and puts it at `path` (0600, O_EXCL semantics unless overwrite).
 * Throws DotnetUnavailableError (not .NET, diagnostics disabled), DotnetRuntimeError (with createdump's
 * message), AccessDeniedError, ProcessGoneError, AbortError, or SystemError EEXIST.
 */
export async function writeDotnetDump(
  pid: number,
  file: string,
  options: DotnetDumpOptions = {},
): Promise<DotnetDumpResult> {
  checkPid(pid);
  if (typeof file !== 'string' || file === '') throw new UsageError('a dump file path is required', 'path');
  const type = options.type ?? 'full';
  if (!DOTNET_DUMP_TYPES.includes(type))
    throw new UsageError(
      `type must be one of ${DOTNET_DUMP_TYPES.join(', ')}, got '${String(type)}'`,
      'type',
    );
  const { signal } = options;
  if (signal?.aborted) throw new AbortError('the dump was aborted before it started');
  const finalDir = path.dirname(path.resolve(file));
  if (!options.overwrite) {
    try {
      lstatSync(file);
      throw eexist(file);
    } catch (e) {
      if (e instanceof SystemError) throw e;
    }
  }
  const lease = await dotnetConnections.acquire(pid, signal);
  let staging: { local: string; inTarget: string } | undefined;
  try {
    const conn = lease.connection;
    staging = await stagingFolder(conn, finalDir);
    const t0 = performance.now();
    await generateCoreDump(conn, path.posix.join(staging.inTarget, 'dump'), type, options);
    const elapsedMs = performance.now() - t0;
    if (signal?.aborted) throw new AbortError(`the dump of process ${pid} was aborted; no file was left`);
    await place(path.join(staging.local, 'dump'), file, options.overwrite === true);
    const st = await stat(file);
    return {
      path: file,
      type,
      bytesWritten: st.size,
      bytesOnDisk: st.blocks * 512,
      elapsedMs,
      runtimeVersion: conn.info.clrProductVersion,
    };
  } catch (e) {
    if (signal?.aborted && !(e instanceof AbortError))
      throw new AbortError(`the dump of process ${pid} was aborted; no file was left`);
    throw e;
  } finally {
    // On abort the runtime may still be writing: its file is unlinked here and vanishes when it closes it.
    if (staging) await rm(staging.local, { recursive: true, force: true }).catch(() => {});
    await lease.release();
  }
}

/** PT_LOAD segments of an ELF core with and without file data (what the ptrace writer reports too). */
async function countSegments(file: string): Promise<{ written: number; skipped: number }> {
  const fh = await open(file, 'r');
  try {
    const eh = Buffer.alloc(64);
    await fh.read(eh, 0, 64, 0);
    if (eh.readUInt32BE(0) !== 0x7f454c46) return { written: 0, skipped: 0 };
    const phoff = Number(eh.readBigUInt64LE(32));
    const phentsize = eh.readUInt16LE(54);
    let phnum = eh.readUInt16LE(56);
    if (phnum === 0xffff) {
      const sh = Buffer.alloc(64);
      await fh.read(sh, 0, 64, Number(eh.readBigUInt64LE(40)));
      phnum = sh.readUInt32LE(44);
    }
    if (phentsize < 56 || phnum > 1_000_000) return { written: 0, skipped: 0 };
    const ph = Buffer.alloc(phentsize * phnum);
    await fh.read(ph, 0, ph.length, phoff);
    let written = 0;
    let skipped = 0;
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      if (ph.readUInt32LE(at) !== 1) continue;
      if (ph.readBigUInt64LE(at + 32) > 0n) written++;
      else skipped++;
    }
    return { written, skipped };
  } finally {
    await fh.close();
  }
}

/** A dump of any process: by its runtime when it is .NET, by the ptrace writer otherwise or when that fails. */
export interface RuntimeDumpResult extends CoreDumpResult {
  /** Who wrote it. */
  writer: 'dotnet' | 'ptrace';
  dotnetType?: DotnetDumpType;
  runtimeVersion?: string;
  /** Why a .NET target's dump was written by the ptrace writer instead of its runtime. */
  fallback?: string;
}

function threadCount(pid: number): number {
  try {
    return Number(/^Threads:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Whether `pid` is a .NET process whose runtime can write its dump (its diagnostics socket is there). */
export function hasDiagnosticsSocket(pid: number): boolean {
  try {
    locateSocket(pid);
    return true;
  } catch {
    return false;
  }
}

/**
 * The coredump_filter bits SOS (dotnet-dump analyze) needs in a core of a .NET process: anonymous private
 * memory (0x1: the GC heap), anonymous shared memory (0x2: the runtime's code and loader heaps, which it
 * maps twice from a memfd under W^X), file-backed private mappings (0x4: without the images of
 * libcoreclr.so and the ReadyToRun assemblies SOS finds no runtime) and file-backed shared ones (0x8: the
 * runtime maps IL-only assemblies, the application's own, shared; without them its methods are
 * `app.dll!Unknown`). Measured on .NET 10: 0x33 (the kernel's default) "No CLR runtime found", 0x35 stack
 * walks fail, 0x37 the application's frames unnamed, 0xf and 0x3f load whole.
 */
export const SOS_FILTER_BITS = 0xf;

/** The filter a ptrace core of .NET process `pid` gets when none is given: its own, plus what SOS needs. */
export function sosFilter(pid: number): number {
  let own = 0x33; // the kernel's default, if the target's cannot be read
  try {
    own = Number.parseInt(readFileSync(`/proc/${pid}/coredump_filter`, 'latin1'), 16);
  } catch {
    // gone: the writer says so
  }
  return (own | SOS_FILTER_BITS) & 0x1ff;
}

/**
 * The dump writer for `tripdump dump` and the dump action: a .NET target's own runtime writes it (type
 * `dotnetType`, default full); any other process, or a .NET target whose runtime cannot (diagnostics
 * disabled, createdump failed), gets the ptrace core writer, and `fallback` says why. A .NET target's
 * ptrace core gets sosFilter() unless a filter is given, and goes to `fallbackFile` when given (a name
 * that says what it is), else to `file`.
 */
export async function writeRuntimeAwareDump(
  pid: number,
  file: string,
  options: CoreDumpOptions & {
    dotnetType?: DotnetDumpType | undefined;
    fallbackFile?: string | undefined;
  } = {},
): Promise<RuntimeDumpResult> {
  const { dotnetType, fallbackFile, ...core } = options;
  let fallback: string | undefined;
  try {
    locateSocket(pid);
    const t = dotnetType ?? 'full';
    const r = await writeDotnetDump(pid, file, {
      type: t,
      ...(core.overwrite !== undefined ? { overwrite: core.overwrite } : {}),
      ...(core.signal ? { signal: core.signal } : {}),
    });
    const segments = await countSegments(r.path);
    return {
      path: r.path,
      bytesWritten: r.bytesWritten,
      bytesOnDisk: r.bytesOnDisk,
      threads: threadCount(pid),
      mappingsWritten: segments.written,
      mappingsSkipped: segments.skipped,
      pauseMs: r.elapsedMs,
      // The runtime's own writer (createdump) holds the target for the whole dump: one phase.
      pausePhases: [{ phase: 'write', ms: r.elapsedMs }],
      mode: 'stop',
      warnings:
        core.filter !== undefined ? ['the coredump_filter mask does not apply to a .NET runtime dump'] : [],
      writer: 'dotnet',
      dotnetType: t,
      ...(r.runtimeVersion ? { runtimeVersion: r.runtimeVersion } : {}),
    };
  } catch (e) {
    if (e instanceof AbortError || e instanceof ProcessGoneError || e instanceof UsageError) throw e;
    if (e instanceof SystemError && e.code === 'EEXIST') throw e;
    if (e instanceof DotnetUnavailableError && e.reason === 'not-dotnet') {
      const r = await writeCoreDump(pid, file, core);
      return { ...r, writer: 'ptrace' };
    }
    fallback = `the .NET runtime could not write the dump (${(e as Error).message}); written by the ptrace writer instead`;
  }
  let filter = core.filter;
  if (filter === undefined) {
    filter = sosFilter(pid);
    fallback += `, coredump_filter 0x${filter.toString(16)} (with the mappings SOS needs)`;
  }
  const r = await writeCoreDump(pid, fallbackFile ?? file, { ...core, filter });
  return { ...r, writer: 'ptrace', fallback, warnings: [...r.warnings, fallback] };
}

/** How a runtime dump is described in the monitor's log line; undefined for a ptrace core. */
export function runtimeDumpNote(r: CoreDumpResult): string | undefined {
  const d = r as Partial<RuntimeDumpResult>;
  if (d.writer !== 'dotnet') return undefined;
  return `.NET runtime dump, type ${d.dotnetType}, ${(r.bytesWritten / 2 ** 20).toFixed(1)} MiB in ${(r.pauseMs / 1000).toFixed(2)} s`;
}
