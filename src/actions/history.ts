// The sample history action and the sidecar format: what was measured before a firing, as JSON.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
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

/**
 * Writes a file the way every output of tripdump is written (design §3): mode 0600, O_EXCL|O_NOFOLLOW,
 * under a temporary name in the same directory, renamed when complete. Rejects with EEXIST when the
 * final name exists; with overwrite it replaces a regular file only (ELOOP for a symlink, EISDIR for a
 * folder), as the core writer does (native/dump/output_file.h).
 */
export async function writeFileSafely(file: string, data: string, overwrite = false): Promise<void> {
  // A short name of its own, so that a final name of NAME_MAX bytes still works.
  const tmp = path.join(path.dirname(file), `.tripdump-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await fh.writeFile(data);
    await fh.close();
    if (!overwrite) {
      // rename() replaces silently; link() refuses an existing name, which is the check we want.
      await link(tmp, file);
      await unlink(tmp);
    } else {
      const st = await lstat(file).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      });
      if (st && !st.isFile()) {
        const code = st.isSymbolicLink() ? 'ELOOP' : st.isDirectory() ? 'EISDIR' : 'EEXIST';
        throw Object.assign(new Error(`${code}: ${file} is not a regular file: not replaced`), {
          code,
          path: file,
          syscall: 'rename',
        });
      }
      await rename(tmp, file);
    }
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Writes the sample history alone (no dump), to the file `path` names for this firing. */
export class HistoryAction implements Action {
  readonly kind = 'history';
  constructor(private readonly path: (ctx: ActionContext) => string) {}

  async run(ctx: ActionContext): Promise<ActionResult> {
    const file = this.path(ctx);
    await writeFileSafely(file, `${JSON.stringify(sidecar(ctx), null, 2)}\n`);
    ctx.written.set('history', file);
    return { path: file, message: `Sample history written: ${file}` };
  }
}
