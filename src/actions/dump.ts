// The dump action: a core file named as ProcDump names it, never colliding, with a sidecar JSON beside it
// holding the trigger, the value, the process identity and the samples that led up to it.
import { lstatSync } from 'node:fs';
import type { CoreDumpResult, DumpMode } from '../dump/core.js';
import { dumpPath } from '../dump/naming.js';
import { runtimeDumpNote, writeRuntimeAwareDump } from '../runtimes/dotnet/dump.js';
import type { DumpFn } from '../triggers/trigger.js';
import type { Action, ActionContext, ActionResult } from './action.js';
import { sidecar, writeFileSafely } from './history.js';

export interface DumpActionOptions {
  /** Folder for the dumps. */
  dir: string;
  /** A custom file name (ProcDump's DUMP_FILE); later dumps get `_1`, `_2`… */
  file?: string | undefined;
  mode?: DumpMode | undefined;
  filter?: number | undefined;
  /** Replace existing files (-o) instead of choosing the next free name. */
  overwrite?: boolean;
  onProgress?: ((done: number, total: number) => void) | undefined;
}

function exists(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/** How many names to try before giving up on finding a free one. */
const MAX_NAME_TRIES = 1000;

export class DumpAction implements Action {
  readonly kind = 'dump';
  #count = 0;
  constructor(readonly options: DumpActionOptions) {}

  async run(ctx: ActionContext): Promise<ActionResult> {
    const o = this.options;
    // A trigger that traces the target (signals) writes the dump itself and gets one path, so the name
    // is chosen free beforehand; writeCoreDump can instead retry on EEXIST.
    // A .NET target's runtime writes its own dump (falling back to the ptrace writer, which it says).
    const write: DumpFn =
      ctx.firing.dump ?? ((file, options) => writeRuntimeAwareDump(ctx.target.pid, file, options));
    let result: CoreDumpResult | undefined;
    for (let n = 0; !result; n++) {
      const file = dumpPath(
        { dir: o.dir, file: o.file },
        ctx.target.name,
        ctx.firing.tag,
        ctx.target.pid,
        ctx.time,
        n + (o.file ? this.#count : 0),
      );
      if (!o.overwrite && n < MAX_NAME_TRIES && exists(file)) continue;
      try {
        result = await write(file, {
          ...(o.mode ? { mode: o.mode } : {}),
          ...(o.filter !== undefined ? { filter: o.filter } : {}),
          overwrite: o.overwrite === true,
          signal: ctx.signal,
          ...(o.onProgress ? { onProgress: o.onProgress } : {}),
        });
      } catch (e) {
        if (
          (e as { code?: string }).code !== 'EEXIST' ||
          o.overwrite ||
          n >= MAX_NAME_TRIES ||
          ctx.firing.dump
        )
          throw e;
      }
    }
    const index = this.#count++;
    ctx.written.set('dump', result.path);
    await writeFileSafely(
      `${result.path}.json`,
      `${JSON.stringify(sidecar(ctx, { dump: result }), null, 2)}\n`,
      o.overwrite === true,
    );
    const paused =
      runtimeDumpNote(result) ?? `target paused ${result.pauseMs.toFixed(1)} ms, ${result.mode} mode`;
    const warn = result.warnings.length ? ` (${result.warnings.join('; ')})` : '';
    return { path: result.path, message: `Core dump ${index} generated: ${result.path} (${paused})${warn}` };
  }
}
