// `tripdump sample --runtime`: which runtime each process runs (and its version), asked once per process
// identity (pid + start time) and remembered: detection is a stat, plus ProcessInfo2 for .NET processes.
import { ProcessGoneError } from '../errors.js';
import { detectRuntime, type RuntimeFacts } from '../runtimes/detect.js';
import type { ProcessRecord } from '../sampler/fields.js';

export class RuntimeColumn {
  readonly #known = new Map<string, RuntimeFacts>();

  /** Facts for every record (pid → facts); processes that exited meanwhile are left out. */
  async facts(records: readonly ProcessRecord[]): Promise<Map<number, RuntimeFacts>> {
    const out = new Map<number, RuntimeFacts>();
    const live = new Set<string>();
    await Promise.all(
      records.map(async (r) => {
        const id = `${r.pid}:${r.startTime}`;
        live.add(id);
        let f = this.#known.get(id);
        if (!f) {
          try {
            f = await detectRuntime(r.pid);
          } catch (e) {
            if (e instanceof ProcessGoneError) return;
            throw e;
          }
          this.#known.set(id, f);
        }
        out.set(r.pid, f);
      }),
    );
    for (const id of this.#known.keys()) if (!live.has(id)) this.#known.delete(id);
    return out;
  }
}

/** "dotnet 10.0.12", "dotnet (diagnostics disabled…)" or "-". */
export function runtimeLabel(f: RuntimeFacts | undefined): string {
  if (!f || f.kind === 'native') return '-';
  return 'version' in f && f.version ? `${f.kind} ${f.version}` : f.kind;
}

/** Puts a RUNTIME column in front of a table whose first line is the heading and then one line per row. */
export function prefixRuntimeColumn(text: string, labels: readonly string[]): string {
  const lines = text.split('\n');
  const cells = ['RUNTIME', ...labels];
  const width = Math.max(...cells.map((c) => c.length));
  return lines.map((l, i) => `${(cells[i] ?? '').padEnd(width)}  ${l}`).join('\n');
}
