// The agent's limits, checked once where a firing's actions are dispatched: at most N firings of a rule
// in any sliding window (dotnet-monitor's ActionCount / SlidingWindowDuration), a host-wide cap on dump
// bytes per window, and a free-space floor on the filesystem a dump goes to. A crash loop or a fleet of
// processes all crossing a threshold at once can then neither fill the disk nor keep the host dumping.
import { statfsSync } from 'node:fs';
import { plural } from '../plural.js';
import type { AgentConfig, Rule } from './config.js';

export type SuppressReason = 'rule-limit' | 'host-bytes' | 'disk-floor';

export interface Refusal {
  reason: SuppressReason;
  message: string;
}

/** Free and total bytes of the filesystem holding `dir` (what an unprivileged writer may use). */
export function diskSpace(dir: string): { free: number; total: number } {
  const s = statfsSync(dir);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

export class Limiter {
  /** Per rule name: times of admitted firings, oldest first (never more than the rule's count). */
  readonly #fired = new Map<string, number[]>();
  /** Dump bytes written, with when, oldest first. */
  readonly #written: { time: number; bytes: number }[] = [];

  constructor(
    private limits: AgentConfig['limits'],
    private readonly now: () => number = Date.now,
    private readonly space: (dir: string) => { free: number; total: number } = diskSpace,
  ) {}

  /** New limits after a reload; what was counted so far still counts (for rules that kept their name). */
  reconfigure(limits: AgentConfig['limits'], rules: readonly Rule[]): void {
    this.limits = limits;
    const names = new Set(rules.map((r) => r.name));
    for (const name of this.#fired.keys()) if (!names.has(name)) this.#fired.delete(name);
  }

  /** Dump bytes written in the current window. */
  bytesInWindow(): number {
    this.#expire();
    return this.#written.reduce((s, w) => s + w.bytes, 0);
  }

  /**
   * Whether a firing of `rule` may run its actions now. `dumpDirs` are the folders its dumps go to and
   * `estimate` the bytes a dump is expected to take (the target's resident memory). Admitting records the
   * firing in the rule's window.
   */
  admit(rule: Rule, dumpDirs: readonly string[], estimate: number): Refusal | undefined {
    const now = this.now();
    const times = this.#fired.get(rule.name) ?? [];
    if (rule.limit) {
      while (times.length && times[0]! <= now - rule.limit.windowMs) times.shift();
      if (times.length >= rule.limit.count)
        return {
          reason: 'rule-limit',
          message: `rule ${rule.name} already fired ${plural(times.length, 'time')} in the last ${rule.limit.windowMs / 1000} s (limit ${rule.limit.count})`,
        };
    }
    if (dumpDirs.length) {
      const { bytes } = this.limits;
      if (bytes !== undefined) {
        const used = this.bytesInWindow();
        if (used + estimate > bytes)
          return {
            reason: 'host-bytes',
            message: `dumps wrote ${used} bytes in the last ${this.limits.windowMs / 1000} s; another of ~${estimate} would pass the limit of ${bytes}`,
          };
      }
      for (const dir of dumpDirs) {
        const { free, total } = this.space(dir);
        const floor =
          'bytes' in this.limits.minFree ? this.limits.minFree.bytes : this.limits.minFree.fraction * total;
        if (free - estimate < floor)
          return {
            reason: 'disk-floor',
            message: `${dir} has ${free} bytes free; a dump of ~${estimate} would leave less than the floor of ${Math.round(floor)}`,
          };
      }
    }
    if (rule.limit) {
      times.push(now);
      this.#fired.set(rule.name, times);
    }
    return undefined;
  }

  /** Counts bytes a dump wrote against the host window. */
  wrote(bytes: number): void {
    this.#written.push({ time: this.now(), bytes });
    this.#expire();
  }

  #expire(): void {
    const from = this.now() - this.limits.windowMs;
    while (this.#written.length && this.#written[0]!.time <= from) this.#written.shift();
  }
}
