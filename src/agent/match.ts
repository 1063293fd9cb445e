// Which processes a rule is about. The comm comes from the sampler's sweep; anything else (command line,
// executable, uid, cgroup) is read from /proc only when a filter asks for it, once per process however
// many rules look, and only for processes that are new or exec()ed since the last sweep.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { mapsRuntime, runtimeReachable } from '../runtimes/detect.js';
import type { ProcessFilter } from './config.js';

/** How long a process that shows no runtime yet may still be loading one (a .NET apphost maps CoreCLR late). */
const RUNTIME_LOAD_MS = 10_000;

/** What a filter may look at, read lazily. A process gone meanwhile reads as empty (and then matches nothing). */
export class ProcessFacts {
  #cmdline?: string[];
  #exe?: string;
  #uid?: number | null;
  #status?: string;
  #cgroup?: string[];
  #runtime?: 'node' | 'dotnet' | null;

  constructor(
    readonly pid: number,
    readonly comm: string,
    /** Milliseconds since the epoch, when the sweep knows it: a young process may not show its runtime yet. */
    readonly startTime?: number,
  ) {}

  /** Facts known already (a crash's, from the handler's metadata): nothing is read from /proc. */
  static known(
    pid: number,
    comm: string,
    facts: { argv: string[]; exe: string; uid: number; cgroup: string },
  ): ProcessFacts {
    const f = new ProcessFacts(pid, comm);
    f.#cmdline = facts.argv;
    f.#exe = facts.exe;
    f.#uid = facts.uid;
    f.#cgroup = parseCgroups(facts.cgroup);
    return f;
  }

  #read(file: string): string {
    try {
      return readFileSync(`/proc/${this.pid}/${file}`, 'latin1');
    } catch {
      return '';
    }
  }

  get argv(): string[] {
    this.#cmdline ??= this.#read('cmdline').split('\0');
    if (this.#cmdline[this.#cmdline.length - 1] === '') this.#cmdline.pop();
    return this.#cmdline;
  }

  /** ProcDump's name for the process: argv[0]'s basename. */
  get name(): string {
    return path.basename(this.argv[0] ?? '') || this.comm;
  }

  get cmdline(): string {
    return this.argv.join(' ');
  }

  get exe(): string {
    if (this.#exe === undefined) {
      try {
        this.#exe = readlinkSync(`/proc/${this.pid}/exe`).replace(/ \(deleted\)$/, '');
      } catch {
        this.#exe = '';
      }
    }
    return this.#exe;
  }

  get #statusText(): string {
    this.#status ??= this.#read('status');
    return this.#status;
  }

  /** The real uid (first field of Uid: in status), null if unreadable. */
  get uid(): number | null {
    if (this.#uid === undefined) {
      const m = /^Uid:\s+(\d+)/m.exec(this.#statusText);
      this.#uid = m ? Number(m[1]) : null;
    }
    return this.#uid;
  }

  /**
   * Whether this is the copy a snapshot dump makes of its target: a child of the target with its name and
   * memory, traced by a thread of this very process while the dump runs, and cloned with no exit signal
   * (the target gets no SIGCHLD), which is how it still looks while it dies after the dump.
   */
  get snapshotCopy(): boolean {
    const m = /^TracerPid:\s+(\d+)/m.exec(this.#statusText);
    if (m && m[1] !== '0' && existsSync(`/proc/self/task/${m[1]}`)) return true;
    const stat = this.#read('stat');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Field 4 is the parent, field 38 the exit signal (proc(5)); fields[0] is field 3.
    if (fields[35] !== '0') return false;
    try {
      return readFileSync(`/proc/${fields[1]}/comm`, 'latin1').trimEnd() === this.comm;
    } catch {
      return false; // the parent is gone: not a copy of a live target
    }
  }

  /** The cgroup paths, one per hierarchy (v2 alone: one). */
  get cgroups(): string[] {
    this.#cgroup ??= parseCgroups(this.#read('cgroup'));
    return this.#cgroup;
  }

  /**
   * The runtime the process runs: 'node', 'dotnet' or null (neither); undefined while it is too young to
   * tell (its runtime may still be loading).
   */
  get runtime(): 'node' | 'dotnet' | null | undefined {
    if (this.#runtime !== undefined) return this.#runtime;
    const seen = mapsRuntime(this.pid);
    const young = this.startTime !== undefined && Date.now() - this.startTime < RUNTIME_LOAD_MS;
    // A runtime still starting cannot be reached yet (Node has not installed its SIGUSR1 handler, .NET
    // has not made its diagnostics socket): asked again later. One that never can be (--disable-sigusr1,
    // DOTNET_EnableDiagnostics=0) is decided once it is no longer young, and its runtime triggers then
    // say why they cannot watch it.
    if (seen && young && !runtimeReachable(this.pid, seen)) return undefined;
    if (seen) this.#runtime = seen;
    else if (young) return undefined;
    else this.#runtime = null;
    return this.#runtime;
  }

  /** A container id in the cgroup path (docker-<64 hex>.scope, /kubepods/…/<64 hex>, cri-containerd-…). */
  get containerId(): string | undefined {
    for (const c of this.cgroups) {
      const m = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:\/|$)/.exec(c);
      if (m) return m[1];
    }
    return undefined;
  }
}

/** `0::/system.slice/x.service` lines → their paths. */
function parseCgroups(text: string): string[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1));
}

/** Whether a filter holds; undefined: not known yet (see ProcessFacts.runtime). */
type Test = (f: ProcessFacts) => boolean | undefined;

function globs(
  list: readonly string[] | undefined,
  get: (f: ProcessFacts) => string | string[],
  paths = false,
): Test | undefined {
  if (!list) return undefined;
  // In paths (exe, cgroup) `*` stays within one component and `**` crosses them; in names and command
  // lines `*` matches anything, '/' included (picomatch's bash mode). Anything includes a line break: an
  // argument with one in it must not hide a process from a rule (the `s` flag: `.` matches it too).
  const re = list.map((g) => picomatch.makeRe(g, { dot: true, bash: !paths, flags: 's' }));
  return (f) => {
    const v = get(f);
    return (Array.isArray(v) ? v : [v]).some((s) => re.some((r) => r.test(s)));
  };
}

/**
 * Compiles a rule's filter; every filter given must hold, the cheap ones (comm) are tried first. Undefined
 * when none fails but one cannot tell yet (a young process's runtime).
 */
export function compileFilter(filter: ProcessFilter): Test {
  const tests: Test[] = [];
  const add = (t: Test | undefined) => {
    if (t) tests.push(t);
  };
  add(globs(filter.comm, (f) => f.comm));
  add(globs(filter.name, (f) => f.name));
  add(globs(filter.exe, (f) => f.exe, true));
  add(globs(filter.cmdline, (f) => f.cmdline));
  if (filter.uid) {
    const uids = new Set(filter.uid);
    tests.push((f) => f.uid !== null && uids.has(f.uid));
  }
  add(globs(filter.cgroup, (f) => f.cgroups, true));
  if (filter.container) {
    const prefix = filter.container;
    tests.push((f) => f.containerId?.startsWith(prefix) === true);
  }
  if (filter.runtime) {
    const want = filter.runtime;
    tests.push((f) => {
      const r = f.runtime;
      return r === undefined ? undefined : r === want;
    });
  }
  return (f) => {
    let known = true;
    for (const t of tests) {
      const ok = t(f);
      if (ok === false) return false;
      if (ok === undefined) known = false;
    }
    return known ? true : undefined;
  };
}
