// What tripdump takes from a Node target through its inspector, as library functions and as monitor
// actions: a heap snapshot streamed to a .heapsnapshot file, a diagnostic report, the JavaScript stack of
// the running (or blocked) event loop, a CPU profile. Each takes a lease on the target's one connection and
// runs alone on it.
import { performance } from 'node:perf_hooks';
import { sleep } from '../../abort.js';
import type { Action, ActionContext, ActionResult } from '../../actions/action.js';
import { createFileSafely, sidecar, writeFileSafely } from '../../actions/history.js';
import { dumpPath, historyPath, timestamp } from '../../dump/naming.js';
import { AbortError, SystemError, UsageError } from '../../errors.js';
import type { TriggerTag } from '../../triggers/trigger.js';
import type { CdpParams } from './cdp.js';
import { NodeInspectorError } from './errors.js';
import { withNodeInspector } from './inspector.js';

export interface NodeFileOptions {
  /** Replace an existing file (default: EEXIST). */
  overwrite?: boolean;
  /** Aborting stops waiting; nothing is left written, the target is left running and not paused. */
  signal?: AbortSignal;
}

export interface HeapSnapshotResult {
  path: string;
  bytes: number;
  /** From asking to the last byte written, ms. */
  durationMs: number;
}

/** How V8's inspector sends a snapshot chunk: the text of one JSON string field, the rest fixed. */
const CHUNK_PREFIX = '{"method":"HeapProfiler.addHeapSnapshotChunk","params":{"chunk":"';
const CHUNK_SUFFIX = '"}}';
/** Chunks are written in batches of this size; past HIGH_WATER bytes queued, reading pauses. */
const BATCH_BYTES = 2 ** 20;
const HIGH_WATER_BYTES = 8 * 2 ** 20;

/**
 * Writes a heap snapshot of Node process pid to `file` (a .heapsnapshot that Chrome DevTools loads). The
 * snapshot is streamed: V8 sends it in chunks as it serialises it, each written as it arrives, so tripdump
 * never holds it whole (reading pauses while the disk catches up). The target is busy in V8 for the time
 * it takes to snapshot and serialise its heap, as with v8.writeHeapSnapshot().
 */
export async function writeHeapSnapshot(
  pid: number,
  file: string,
  options: NodeFileOptions = {},
): Promise<HeapSnapshotResult> {
  const { signal } = options;
  // The file first: a name that is taken fails before the target's inspector is touched.
  const out = createFileSafely(file, options.overwrite === true);
  const started = performance.now();
  return withNodeInspector(pid, signal, (inspector) =>
    inspector.exclusive(async () => {
      const session = inspector.session;
      let batch: Buffer[] = [];
      let batchBytes = 0;
      let queued = 0;
      let paused = false;
      let failure: unknown;
      let writing = Promise.resolve();
      const flush = () => {
        if (batchBytes === 0) return;
        const data = batch;
        const bytes = batchBytes;
        batch = [];
        batchBytes = 0;
        queued += bytes;
        if (queued > HIGH_WATER_BYTES && !paused) {
          paused = true;
          session.pause();
        }
        writing = writing
          .then(() => (failure === undefined ? out.writeJsonText(data) : undefined))
          .catch((e: unknown) => {
            failure ??= e;
          })
          .finally(() => {
            queued -= bytes;
            if (paused && (queued < HIGH_WATER_BYTES / 2 || failure !== undefined)) {
              paused = false;
              session.resume();
            }
          });
      };
      // Each chunk event is taken as bytes: the literal's contents go to the file, decoded natively, so no
      // JS string is made of the snapshot (they would grow tripdump's heap with it).
      const off = session.onRaw(CHUNK_PREFIX, (m) => {
        if (
          m.length < CHUNK_PREFIX.length + CHUNK_SUFFIX.length ||
          m.toString('latin1', m.length - 3) !== CHUNK_SUFFIX
        ) {
          failure ??= new NodeInspectorError(
            pid,
            'protocol',
            `process ${pid} sent a heap snapshot chunk of an unknown shape`,
          );
          return;
        }
        const chunk = m.subarray(CHUNK_PREFIX.length, m.length - CHUNK_SUFFIX.length);
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes >= BATCH_BYTES) flush();
      });
      try {
        await inspector.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false }, { signal });
        flush();
        await writing;
        if (failure !== undefined) throw failure;
        out.commit();
        return { path: file, bytes: out.size, durationMs: performance.now() - started };
      } finally {
        off();
        if (paused) session.resume();
        // Frees V8's map of heap object ids the snapshot built, in the target.
        inspector.send('HeapProfiler.disable').catch(() => {});
      }
    }),
  ).finally(() => out.close());
}

export interface StackFrame {
  functionName: string;
  /** The script's URL or path ('' for code without one, e.g. an eval). */
  url: string;
  /** 1-based, as in Error stacks. */
  line: number;
  column: number;
}

export interface NodeStack {
  pid: number;
  /** When the stack was taken (ISO 8601). */
  time: string;
  /** No JavaScript ran within idleTimeoutMs of asking: the event loop is idle (or blocked outside JavaScript). */
  idle: boolean;
  /** How long the target was paused, ms (from the paused event to the resume's answer). */
  pausedMs: number;
  /** From asking for the stack (the debugger enabled, the pause requested) to the paused event, ms. */
  latencyMs: number;
  /** Innermost first. */
  frames: StackFrame[];
}

export interface CaptureStackOptions {
  signal?: AbortSignal;
  /** How long to wait for JavaScript to run when the loop is idle (default 2 s). */
  idleTimeoutMs?: number;
}

/**
 * The JavaScript stack of the target's main thread, taken with Debugger.pause: a busy or blocked loop is
 * interrupted where it is (that is the moment that matters for a stuck loop); an idle one pauses in the
 * next JavaScript it runs. The target is resumed at once, and on every path out of here (an error, an
 * abort: Debugger.disable resumes it; tripdump killed: V8 resumes when the session's socket closes).
 */
export async function captureNodeStack(pid: number, options: CaptureStackOptions = {}): Promise<NodeStack> {
  const { signal } = options;
  const idleTimeoutMs = options.idleTimeoutMs ?? 2000;
  return withNodeInspector(pid, signal, (inspector) =>
    inspector.exclusive(async () => {
      const session = inspector.session;
      const scripts = new Map<string, string>();
      let paused: CdpParams | undefined;
      let wake = () => {};
      const offs = [
        session.on('Debugger.scriptParsed', (p) => {
          scripts.set(String(p.scriptId), typeof p.url === 'string' ? p.url : '');
        }),
        session.on('Debugger.paused', (p) => {
          paused ??= p;
          wake();
        }),
      ];
      let pausedMs = 0;
      let latencyMs = 0;
      const asked = performance.now();
      try {
        await inspector.send('Debugger.enable', {}, { signal });
        await inspector.send('Debugger.pause', {}, { signal });
        if (!paused) {
          const wait = new AbortController();
          const waiting = sleep(idleTimeoutMs, wait.signal);
          wake = () => wait.abort();
          signal?.addEventListener('abort', wake, { once: true });
          await waiting;
          signal?.removeEventListener('abort', wake);
        }
        if (signal?.aborted) throw new AbortError('taking the stack was aborted');
        const at = performance.now();
        latencyMs = paused ? at - asked : 0;
        if (paused) {
          await inspector.send('Debugger.resume');
          pausedMs = performance.now() - at;
        }
      } finally {
        for (const off of offs) off();
        // Resumes the target if it is still paused, and drops a pause request that found no JavaScript.
        await inspector.send('Debugger.disable', {}, { timeoutMs: 5000 }).catch(() => {});
      }
      const frames = ((paused?.callFrames ?? []) as CdpParams[]).map((f): StackFrame => {
        const loc = (f.location ?? {}) as CdpParams;
        const url = typeof f.url === 'string' && f.url ? f.url : (scripts.get(String(loc.scriptId)) ?? '');
        return {
          functionName: typeof f.functionName === 'string' ? f.functionName : '',
          url,
          line: Number(loc.lineNumber ?? 0) + 1,
          column: Number(loc.columnNumber ?? 0) + 1,
        };
      });
      return { pid, time: new Date().toISOString(), idle: !paused, pausedMs, latencyMs, frames };
    }),
  );
}

/**
 * The stack as Node prints one: "    at fn (file:line:column)". Function names and URLs are the target's
 * text: `quote` (the CLI passes its terminal escaping) is applied to each, so a name cannot add a line or
 * act on the terminal.
 */
export function formatNodeStack(s: NodeStack, quote: (text: string) => string = (t) => t): string {
  if (s.idle) return 'No JavaScript is running: the event loop is idle (or blocked outside JavaScript).\n';
  return `${s.frames
    .map(
      (f) =>
        `    at ${quote(f.functionName || '<anonymous>')} (${quote(f.url || '<unknown>')}:${f.line}:${f.column})`,
    )
    .join('\n')}\n`;
}

export interface NodeFileResult {
  path: string;
  bytes: number;
  durationMs: number;
}

async function evaluate(
  pid: number,
  expression: string,
  signal: AbortSignal | undefined,
  timeoutMs: number,
): Promise<unknown> {
  return withNodeInspector(pid, signal, async (inspector) => {
    const r = await inspector.send<{ result?: { value?: unknown }; exceptionDetails?: CdpParams }>(
      'Runtime.evaluate',
      { expression, returnByValue: true },
      { signal, timeoutMs },
    );
    if (r.exceptionDetails) {
      const ex = r.exceptionDetails.exception as { description?: string } | undefined;
      throw new NodeInspectorError(
        pid,
        'evaluate',
        `evaluating in process ${pid} failed: ${ex?.description ?? String(r.exceptionDetails.text)}`,
      );
    }
    return r.result?.value;
  });
}

/**
 * Writes the target's diagnostic report (process.report.getReport(), the JSON `node --report-on-signal`
 * writes) to `file`. Its JavaScript stack is the one running when the request interrupted it.
 */
export async function writeNodeReport(
  pid: number,
  file: string,
  options: NodeFileOptions & { timeoutMs?: number } = {},
): Promise<NodeFileResult> {
  const started = performance.now();
  const out = createFileSafely(file, options.overwrite === true);
  try {
    const report = await evaluate(
      pid,
      'JSON.stringify(process.report.getReport(), null, 2)',
      options.signal,
      options.timeoutMs ?? 30_000,
    );
    if (typeof report !== 'string')
      throw new NodeInspectorError(
        pid,
        'evaluate',
        `process ${pid} has no process.report (Node.js before 11.8?)`,
      );
    await out.write(`${report}\n`);
    out.commit();
    return { path: file, bytes: out.size, durationMs: performance.now() - started };
  } finally {
    out.close();
  }
}

export interface CpuProfileOptions extends NodeFileOptions {
  seconds: number;
  /** V8's sampling interval, µs (default V8's: 1000). */
  intervalUs?: number;
}

/** Profiles the target's JavaScript for `seconds` and writes the .cpuprofile (Chrome DevTools' format). */
export async function writeCpuProfile(
  pid: number,
  file: string,
  options: CpuProfileOptions,
): Promise<NodeFileResult> {
  const { signal, seconds } = options;
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new UsageError(`a profile needs a duration in seconds > 0, got ${seconds}`, 'seconds');
  const out = createFileSafely(file, options.overwrite === true);
  return withNodeInspector(pid, signal, (inspector) =>
    inspector.exclusive(async () => {
      const started = performance.now();
      let running = false;
      try {
        await inspector.send('Profiler.enable', {}, { signal });
        if (options.intervalUs)
          await inspector.send('Profiler.setSamplingInterval', { interval: options.intervalUs });
        await inspector.send('Profiler.start', {}, { signal });
        running = true;
        await sleep(seconds * 1000, signal ?? new AbortController().signal);
        if (signal?.aborted) throw new AbortError('the profile was aborted');
        const { profile } = await inspector.send<{ profile: unknown }>(
          'Profiler.stop',
          {},
          { timeoutMs: 30_000 },
        );
        running = false;
        await out.write(JSON.stringify(profile));
        out.commit();
        return { path: file, bytes: out.size, durationMs: performance.now() - started };
      } finally {
        if (running) await inspector.send('Profiler.stop', {}, { timeoutMs: 5000 }).catch(() => {});
        inspector.send('Profiler.disable').catch(() => {});
      }
    }),
  ).finally(() => out.close());
}

/** What a monitor firing can write on a Node target. */
export type NodeOutput = 'core' | 'heap' | 'stack' | 'report' | 'profile';
export const NODE_OUTPUTS: readonly NodeOutput[] = ['core', 'heap', 'stack', 'report', 'profile'];

/**
 * What a firing writes when no outputs were chosen: each Node trigger its own evidence (the heap for a heap
 * trigger, the blocked loop's stack for a loop-delay trigger), every other trigger a core, as ProcDump.
 */
export function defaultNodeOutputs(tag: TriggerTag): NodeOutput[] {
  if (tag === 'heapused') return ['heap'];
  if (tag === 'loopdelay') return ['stack'];
  return ['core'];
}

export interface NodeOutputOptions {
  /** Folder for the files. */
  dir: string;
  /** A custom name (ProcDump's DUMP_FILE): NAME.<pid>, NAME_1.<pid>… plus the extension. */
  file?: string | undefined;
  /** Replace an existing file (-o); without it, an existing name fails, as a dump's does. */
  overwrite?: boolean;
  /** What every firing writes; default: defaultNodeOutputs(firing's tag). */
  outputs?: readonly NodeOutput[] | undefined;
  /** Duration of a 'profile' output (default 5 s). */
  profileSeconds?: number;
  /** Write each file's sample history to this folder as `<file name>.json` (default: none). */
  historyDir?: string | undefined;
}

const EXTENSIONS = {
  heap: '.heapsnapshot',
  stack: '.stack.json',
  report: '.report.json',
  profile: '.cpuprofile',
} as const;

/**
 * One output of a firing on a Node target, named as ProcDump names dumps plus an extension
 * (`node_heapused_250102_101500.1234.heapsnapshot`), like a dump in every other respect: nothing else in the
 * dump folder (the sample history only with historyDir), an existing name refused without -o. The stack
 * file holds the stack with the process and the trigger. It does nothing for firings that do not want it
 * (see NodeOutputOptions).
 */
export class NodeOutputAction implements Action {
  readonly kind: string;
  readonly usesHistory: boolean;
  #count = 0;
  /** Names this action wrote in the current second (default names) or at all (custom names): a counter. */
  #taken = new Set<string>();
  #takenSecond = '';

  constructor(
    readonly output: Exclude<NodeOutput, 'core'>,
    readonly options: NodeOutputOptions,
  ) {
    this.kind = output;
    this.usesHistory = options.historyDir !== undefined;
  }

  async run(ctx: ActionContext): Promise<ActionResult> {
    if (!wants(this.options, ctx, this.output)) return { message: '' };
    const o = this.options;
    const pid = ctx.target.pid;
    const second = timestamp(ctx.time);
    if (!o.file && second !== this.#takenSecond) {
      this.#taken.clear();
      this.#takenSecond = second;
    }
    const name = (n: number) =>
      dumpPath({ dir: o.dir, file: o.file }, ctx.target.name, ctx.firing.tag, pid, ctx.time, n) +
      EXTENSIONS[this.output];
    let n = 0;
    while (this.#taken.has(name(n))) n++;
    const file = name(n);
    try {
      const r = await this.#write(ctx, file);
      this.#taken.add(file);
      return r;
    } catch (e) {
      if (e instanceof SystemError && e.code === 'EEXIST' && !o.overwrite)
        throw new SystemError(
          { errno: e.errno, code: e.code, syscall: e.syscall, path: file, pid },
          `Dump file ${file} already exists and was not overwritten (use -o to overwrite)`,
        );
      throw e;
    }
  }

  async #write(ctx: ActionContext, file: string): Promise<ActionResult> {
    const pid = ctx.target.pid;
    const { signal } = ctx;
    const overwrite = this.options.overwrite === true;
    const index = this.#count;
    let message: string;
    let result: NodeFileResult | NodeStack;
    if (this.output === 'stack') {
      const stack = await captureNodeStack(pid, { signal });
      result = stack;
      const { tag, reason, value, threshold } = ctx.firing;
      await writeFileSafely(
        file,
        `${JSON.stringify({ process: ctx.target, trigger: { tag, reason, value, threshold }, ...stack }, null, 2)}\n`,
        overwrite,
      );
      const top = stack.frames[0];
      const where = stack.idle
        ? 'no JavaScript running'
        : top
          ? `in ${top.functionName || '<anonymous>'} at ${top.url}:${top.line}`
          : 'empty';
      message = `JavaScript stack ${index} captured: ${file} (${where}; target paused ${stack.pausedMs.toFixed(1)} ms)`;
    } else if (this.output === 'heap') {
      const r = await writeHeapSnapshot(pid, file, { signal, overwrite });
      result = r;
      message = `Heap snapshot ${index} generated: ${file} (${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${(r.durationMs / 1000).toFixed(1)} s)`;
    } else if (this.output === 'report') {
      result = await writeNodeReport(pid, file, { signal, overwrite });
      message = `Diagnostic report ${index} written: ${file}`;
    } else {
      const seconds = this.options.profileSeconds ?? 5;
      result = await writeCpuProfile(pid, file, { signal, overwrite, seconds });
      message = `CPU profile ${index} written: ${file} (${seconds} s)`;
    }
    this.#count++;
    ctx.written.set(this.output, file);
    if (this.options.historyDir !== undefined) {
      const history = historyPath(this.options.historyDir, file);
      await writeFileSafely(
        history,
        `${JSON.stringify(sidecar(ctx, { [this.output]: result }), null, 2)}\n`,
        overwrite,
      );
      ctx.written.set('history', history);
    }
    return { path: file, message };
  }
}

function wants(o: NodeOutputOptions, ctx: ActionContext, output: NodeOutput): boolean {
  return (o.outputs ?? defaultNodeOutputs(ctx.firing.tag)).includes(output);
}

/** Runs the core dump action only for firings that want a core (see NodeOutputOptions). */
export class NodeCoreAction implements Action {
  readonly kind: string;
  readonly usesHistory: boolean;
  constructor(
    readonly core: Action,
    readonly options: Pick<NodeOutputOptions, 'outputs'>,
  ) {
    this.kind = core.kind;
    this.usesHistory = core.usesHistory === true;
  }
  run(ctx: ActionContext): Promise<ActionResult> {
    return wants({ dir: '', ...this.options }, ctx, 'core')
      ? this.core.run(ctx)
      : Promise.resolve({ message: '' });
  }
}

/**
 * The actions of a monitor that may watch Node targets: the blocked loop's stack first (the moment
 * matters), then the core, the heap snapshot, the report and the profile, each for the firings that want it.
 */
export function nodeActions(core: Action, options: NodeOutputOptions): Action[] {
  return [
    new NodeOutputAction('stack', options),
    new NodeCoreAction(core, options),
    new NodeOutputAction('heap', options),
    new NodeOutputAction('report', options),
    new NodeOutputAction('profile', options),
  ];
}
