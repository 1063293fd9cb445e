// Is a process Node.js, and what did it say about its inspector when it started? All read from /proc,
// without touching the process.
import { readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { ProcessGoneError } from '../../errors.js';

function read(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH')
      throw new ProcessGoneError({
        errno: -3,
        code: 'ESRCH',
        syscall: 'open',
        path: `/proc/${pid}/${file}`,
        pid,
      });
    return undefined; // EACCES: not ours to read
  }
}

/** PF_EXITING in the flags of /proc/PID/stat (include/linux/sched.h). */
const PF_EXITING = 0x4;

/**
 * Whether process pid has exited or is on its way out: gone, a zombie, or flagged PF_EXITING. The kernel sets
 * that flag at the start of the exit, before it closes the process's files: a connection to the process that
 * closed because it died is always seen with this true.
 */
export function hasExited(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return true;
  }
  // After comm: state, ppid, pgrp, session, tty_nr, tpgid, flags (fields 3 to 9).
  const [state, , , , , , flags] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return state === 'Z' || state === 'X' || (Number(flags) & PF_EXITING) !== 0;
}

/** The target's executable, or undefined when it cannot be read (another user's process). */
export function executable(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') read(pid, 'stat'); // gone: ProcessGoneError
    return undefined;
  }
}

/**
 * Whether the process is Node.js: its executable is a `node` binary (node, nodejs, node20...), or it has
 * libnode mapped (embedders, Electron-style builds). Throws ProcessGoneError when there is no such process.
 */
export function isNodeProcess(pid: number): boolean {
  return nodeSigns(executable(pid), () => read(pid, 'maps'));
}

/** Node's signs in an executable path, then (only when the name says nothing) in the process's maps. */
export function nodeSigns(exe: string | undefined, maps: () => string | undefined): boolean {
  if (exe && /^node(js)?[\d.-]*$/.test(path.basename(exe))) return true;
  const m = maps();
  return m !== undefined && /\/libnode\.so[.\d]*$/m.test(m);
}

export interface NodeFacts {
  kind: 'node';
  /** The executable, when it can be read. */
  executable?: string;
}

/** Facts about a Node.js process, or undefined when it is not one. Throws ProcessGoneError. */
export function detectNode(pid: number): NodeFacts | undefined {
  if (!isNodeProcess(pid)) return undefined;
  const exe = executable(pid);
  return { kind: 'node', ...(exe ? { executable: exe } : {}) };
}

/** What the command line and NODE_OPTIONS say about the inspector. */
export interface InspectHints {
  /** Started with --inspect, --inspect-brk or --inspect-wait: the inspector is open from the start. */
  atLaunch: boolean;
  /** The port it uses (--inspect=[host:]port, --inspect-port): 9229 by default, 0 for a random one. */
  port: number;
}

const DEFAULT_INSPECT_PORT = 9229;

/** Node's own options in argv: everything before the script (or -e/-p and its argument). */
function nodeOptions(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--' || !a.startsWith('-')) break;
    out.push(a);
    // Options whose value is the next word (only the ones that matter here, and the ones that end argv).
    if (/^(--inspect-port|--debug-port)$/.test(a)) out.push(argv[++i] ?? '');
    if (/^(-e|-p|--eval|--print)$/.test(a)) break;
  }
  return out;
}

export function inspectHints(pid: number): InspectHints {
  const argv = (read(pid, 'cmdline') ?? '').split('\0').filter(Boolean);
  const env = (read(pid, 'environ') ?? '').split('\0');
  const fromEnv = env.find((e) => e.startsWith('NODE_OPTIONS='))?.slice('NODE_OPTIONS='.length) ?? '';
  const options = [...fromEnv.split(/\s+/).filter(Boolean), ...nodeOptions(argv)];
  const hints: InspectHints = { atLaunch: false, port: DEFAULT_INSPECT_PORT };
  for (let i = 0; i < options.length; i++) {
    const m = /^--(inspect(?:-brk|-wait)?|inspect-port|debug-port)(?:=(.*))?$/.exec(options[i]!);
    if (!m) continue;
    const value = m[2] ?? (m[1] === 'inspect-port' || m[1] === 'debug-port' ? options[++i] : undefined);
    if (m[1] !== 'inspect-port' && m[1] !== 'debug-port') hints.atLaunch = true;
    // [host:]port: the part after the last colon when it is a number (a bare host keeps the port).
    const port = value?.match(/(?:^|:)(\d+)$/)?.[1];
    if (port !== undefined) hints.port = Number(port);
  }
  return hints;
}

/**
 * Whether the process has a handler for SIGUSR1 (SigCgt in /proc/PID/status). Node installs one to open
 * its inspector; without it (--disable-sigusr1) SIGUSR1's default action would terminate the process.
 */
export function handlesSigusr1(pid: number): boolean {
  const status = read(pid, 'status') ?? '';
  const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (caught === undefined) return false;
  // Bit n-1 for signal n; SIGUSR1 is 10 on every Linux architecture Node runs on.
  return ((BigInt(`0x${caught}`) >> 9n) & 1n) === 1n;
}
