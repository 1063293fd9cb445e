// The sample history action and the sidecar format: what was measured before a firing, as JSON.
import { fromNative, native } from '../errors.js';
import { binding } from '../native.js';
import type { Action, ActionContext, ActionResult } from './action.js';

export const SIDECAR_VERSION = 1;

export function sidecar(ctx: ActionContext, extra: Record<string, unknown> = {}): object {
  return {
    version: SIDECAR_VERSION,
    time: ctx.time.toISOString(),
    process: ctx.target,
    trigger: {
      tag: ctx.firing.tag,
      reason: ctx.firing.reason,
      value: ctx.firing.value,
      threshold: ctx.firing.threshold,
      ...(ctx.firing.details ? { details: ctx.firing.details } : {}),
    },
    ...extra,
    samples: ctx.history.map((h) => ({ time: h.time, ...h.record })),
  };
}

/** An output file being written; see createFileSafely. */
export interface SafeFile {
  readonly path: string;
  /** Bytes written so far. */
  readonly size: number;
  /** Appends (strings as UTF-8); await each write before the next. */
  write(data: string | Uint8Array): Promise<void>;
  /**
   * Appends the text the contents of a JSON string literal (the bytes between its quotes) stand for, decoded
   * natively (several literals in order when given several): a stream that arrives as JSON strings (CDP
   * events) is written without a JS string per chunk.
   */
  writeJsonText(escaped: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /** Gives the file its final name: EEXIST if it appeared meanwhile (unless overwrite). */
  commit(): void;
  /** Releases the file; if not committed, nothing is left behind. Idempotent. */
  close(): void;
}

/**
 * Creates a file the way every output of tripdump is written (docs/design.md §9), to be filled as a stream: mode
 * 0600, an unnamed O_TMPFILE in the destination directory (a named temporary one where the file system
 * lacks O_TMPFILE) that gets its final name only in commit(), so an interrupted or killed writer leaves
 * nothing half-written. Throws EEXIST at once when the final name exists; with overwrite it replaces a
 * regular file only (ELOOP for a symlink, EISDIR for a folder). It is the core writer's own OutputFile
 * (native/dump/output_file.h), so every output follows the same rules.
 */
export function createFileSafely(file: string, overwrite = false): SafeFile {
  const f = native(() => new (binding().OutputFile)(file, overwrite));
  let size = 0;
  return {
    path: file,
    get size() {
      return size;
    },
    async write(data) {
      const buf =
        typeof data === 'string'
          ? Buffer.from(data, 'utf8')
          : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      try {
        size += await f.write(buf);
      } catch (e) {
        throw fromNative(e);
      }
    },
    async writeJsonText(escaped) {
      try {
        const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
        size += await f.writeJsonText(Array.isArray(escaped) ? escaped.map(buf) : buf(escaped as Uint8Array));
      } catch (e) {
        throw fromNative(e);
      }
    },
    commit() {
      native(() => f.commit());
    },
    close() {
      f.close();
    },
  };
}

/** Writes a whole file as createFileSafely does (EEXIST, ELOOP, EISDIR as it says). */
export async function writeFileSafely(file: string, data: string, overwrite = false): Promise<void> {
  const f = createFileSafely(file, overwrite);
  try {
    await f.write(data);
    f.commit();
  } finally {
    f.close();
  }
}

/** Writes the sample history alone (no dump), to the file `path` names for this firing. */
export class HistoryAction implements Action {
  readonly kind = 'history';
  readonly usesHistory = true;
  constructor(private readonly path: (ctx: ActionContext) => string) {}

  async run(ctx: ActionContext): Promise<ActionResult> {
    const file = this.path(ctx);
    await writeFileSafely(file, `${JSON.stringify(sidecar(ctx), null, 2)}\n`);
    ctx.written.set('history', file);
    return { path: file, message: `Sample history written: ${file}` };
  }
}
