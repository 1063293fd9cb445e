// The monitor: samples its targets every poll interval, asks each trigger to judge each sample, and runs
// the actions when one fires. The sustain window (--for), the cooldown (-s), the dump count (-n, shared
// by all triggers of a target) and the quit logic live here, once, for every trigger.
import { readFileSync } from 'node:fs';
import type { Action, ActionContext, HistoryEntry, TargetInfo } from '../actions/action.js';
import { processName } from '../dump/naming.js';
import { ProcessGoneError, UsageError } from '../errors.js';
import { FIELD_NAMES, type FieldName, type ProcessRecord } from '../sampler/fields.js';
import { Sampler, type WakeCondition } from '../sampler/sampler.js';
import type { Snapshot } from '../sampler/snapshot.js';
import type { DumpFn, Firing, Judgement, Trigger, TriggerState } from '../triggers/trigger.js';

const DISCOVERY_BITS = (1 << FIELD_NAMES.indexOf('comm')) | (1 << FIELD_NAMES.indexOf('pgid'));

export type TargetSpec = { pid: number } | { name: string } | { pgid: number };

export interface MonitorOptions {
  target: TargetSpec;
  /** Polled or event-driven triggers; at least one (use TimerTrigger for ProcDump's no-trigger mode). */
  triggers: readonly Trigger[];
  actions: readonly Action[];
  /** Firings per target before it is done (-n). Default 1. */
  count?: number;
  /** Quiet time after each firing (-s), ms. Default 10,000. */
  cooldownMs?: number;
  /** Sampling interval (-pf), ms. Default 1,000. */
  pollMs?: number;
  /** How long a condition must hold before it fires (--for), ms. Default 0: the first sample that meets it. */
  sustainMs?: number;
  /** Samples kept per target for the history. Default 60. */
  historySize?: number;
  /**
   * Emit every sample as it is taken. By default the event loop sleeps through polls that have nothing to
   * report (the sampler's thread judges them against the triggers' conditions), and 'sample' events for
   * those polls arrive with the next batch.
   */
  live?: boolean;
  signal?: AbortSignal;
}

export type MonitorEvent =
  | { type: 'target'; target: TargetInfo }
  | { type: 'exit'; target: TargetInfo }
  | { type: 'sample'; target: TargetInfo; record: ProcessRecord }
  | { type: 'fire'; target: TargetInfo; firing: Firing; index: number }
  | { type: 'action'; target: TargetInfo; firing: Firing; kind: string; path?: string; message: string }
  | { type: 'error'; target: TargetInfo; firing: Firing | undefined; kind: string; error: Error };

export interface MonitorSummary {
  /** Files written by actions, in order. */
  written: string[];
  firings: number;
  /** Why the monitor stopped. */
  reason: 'done' | 'exited' | 'aborted';
}

interface TriggerSlot {
  trigger: Trigger;
  state: TriggerState;
  /** When the condition started to hold continuously (performance.now()), for --for. */
  since: number | undefined;
}

interface Target {
  info: TargetInfo;
  /** Ends the target's event-driven triggers. */
  events: AbortController;
  slots: TriggerSlot[];
  history: HistoryEntry[];
  firings: number;
  busy: boolean;
  /** Epoch ms, like Snapshot.time. */
  cooldownUntil: number;
  exited: boolean;
}

export class Monitor {
  readonly #o: Required<Omit<MonitorOptions, 'signal'>> & { signal: AbortSignal };
  readonly #listeners: ((e: MonitorEvent) => void)[] = [];
  readonly #targets = new Map<number, Target>();
  readonly #inflight = new Set<Promise<void>>();
  readonly #written: string[] = [];
  #firings = 0;
  /** An event-driven trigger could not start: the monitor ends. */
  #failed = false;
  /** Ends the sampler's current wait, so the loop looks at the targets again. */
  #nudge: () => void = () => {};

  constructor(options: MonitorOptions) {
    if (options.triggers.length === 0) throw new UsageError('a monitor needs at least one trigger');
    const positive = (v: number | undefined, name: string, dflt: number, min: number) => {
      const x = v ?? dflt;
      if (!Number.isFinite(x) || x < min) throw new UsageError(`${name} must be ≥ ${min}, got ${x}`, name);
      return x;
    };
    this.#o = {
      target: options.target,
      triggers: options.triggers,
      actions: options.actions,
      count: positive(options.count, 'count', 1, 1),
      cooldownMs: positive(options.cooldownMs, 'cooldownMs', 10_000, 0),
      pollMs: positive(options.pollMs, 'pollMs', 1000, 1),
      sustainMs: positive(options.sustainMs, 'sustainMs', 0, 0),
      historySize: positive(options.historySize, 'historySize', 60, 1),
      live: options.live === true,
      signal: options.signal ?? new AbortController().signal,
    };
  }

  on(listener: (e: MonitorEvent) => void): this {
    this.#listeners.push(listener);
    return this;
  }

  #emit(e: MonitorEvent): void {
    for (const l of this.#listeners) l(e);
  }

  /** Runs until every target is done (count reached or triggers spent), has exited, or the signal aborts. */
  async run(): Promise<MonitorSummary> {
    const { target: spec, signal } = this.#o;
    const fields = new Set<FieldName>(['comm', 'pgid']);
    for (const t of this.#o.triggers) for (const f of t.fields) fields.add(f);
    // One poll's sweeps come back in a batch: enough blocks to refill the whole history from one.
    const sampler = new Sampler({ fields: [...fields], keep: this.#o.historySize + 1 });
    this.#nudge = () => sampler.wake();
    signal.addEventListener('abort', this.#nudge, { once: true });
    // Targets by name or process group are found by a stat-only sweep of every process.
    const discovery = 'pid' in spec ? undefined : new Sampler({ all: true, fields: ['comm', 'pgid'] });
    try {
      if ('pid' in spec) this.#add(sampler, spec.pid);
      else if ('pgid' in spec) this.#checkGroup(spec.pgid);
      while (!signal.aborted && !this.#failed && !this.#finished()) {
        if (discovery) {
          // A process can join later without being new: exec changes its name, setpgid its group. The
          // change bits say which rows to look at (every bit is set on a new row).
          const d = await discovery.sampleAsync();
          const changed = d.changed;
          for (let row = 0; row < d.length; row++) {
            if (!(changed[row]! & DISCOVERY_BITS)) continue;
            const r = d.record(row);
            if (this.#targets.get(r.pid)?.exited === false) continue;
            if (this.#matches(r.pid, r.comm, r.pgid)) this.#tryAdd(sampler, r.pid);
          }
        }
        // Discovery runs between polls and a live listener wants each one: a single sweep per call then.
        // Otherwise the sampler's thread polls until a trigger's condition holds (or a target starts or
        // exits, a cooldown ends, a dump ends), and this loop sleeps in between.
        const plan = this.#plan();
        const batch = await sampler.sampleUntil({
          intervalMs: this.#o.pollMs,
          waitMs: discovery || this.#o.live ? 0 : plan.waitMs,
          conditions: plan.conditions,
        });
        for (const snap of batch) this.#take(snap);
      }
      for (const t of this.#targets.values()) t.events.abort();
      await Promise.allSettled(this.#inflight);
    } finally {
      signal.removeEventListener('abort', this.#nudge);
      sampler.close();
      discovery?.close();
    }
    const reason = signal.aborted
      ? 'aborted'
      : [...this.#targets.values()].every((t) => this.#done(t))
        ? 'done'
        : 'exited';
    return { written: this.#written, firings: this.#firings, reason };
  }

  /** What should end the sampler's next wait: the conditions of every target that may fire now. */
  #plan(): { conditions: WakeCondition[]; waitMs: number } {
    const conditions: WakeCondition[] = [];
    let waitMs = Number.POSITIVE_INFINITY;
    const now = Date.now();
    for (const t of this.#targets.values()) {
      // A dump in flight nudges the loop when it ends.
      if (t.exited || t.busy || this.#done(t)) continue;
      if (now < t.cooldownUntil) {
        waitMs = Math.min(waitMs, t.cooldownUntil - now);
        continue;
      }
      for (const slot of t.slots) {
        if (!slot.trigger.judge || slot.trigger.limit(slot.state) <= 0) continue;
        // A trigger that cannot say when it would fire is asked at every poll.
        const c = slot.trigger.condition?.(slot.state) ?? { field: 'always', above: true, value: 0 };
        conditions.push({ pid: t.info.pid, ...c });
      }
    }
    return { conditions, waitMs };
  }

  /** One sweep's worth of monitoring: exits, history, 'sample' events, judgements. */
  #take(snap: Snapshot): void {
    for (const e of snap.exited) {
      const t = this.#targets.get(e.pid);
      if (t && t.info.startTime === e.startTime && !t.exited) {
        t.exited = true;
        t.events.abort();
        this.#emit({ type: 'exit', target: t.info });
      }
    }
    for (const t of this.#targets.values()) {
      const record = t.exited ? undefined : snap.get(t.info.pid);
      if (!record) continue;
      t.history.push({ time: snap.time, record });
      if (t.history.length > this.#o.historySize) t.history.shift();
      this.#emit({ type: 'sample', target: t.info, record });
      if (t.busy || snap.time < t.cooldownUntil || this.#done(t)) continue;
      this.#judge(t, record, snap.time);
    }
  }

  /** `now`: the sample's time (epoch ms). */
  #judge(t: Target, record: ProcessRecord, now: number): void {
    for (const slot of t.slots) {
      if (!slot.trigger.judge || slot.trigger.limit(slot.state) <= 0) continue;
      const j = slot.trigger.judge(record, slot.state);
      if (!j?.met) {
        slot.since = undefined;
        continue;
      }
      slot.since ??= now;
      if (now - slot.since < this.#o.sustainMs) continue;
      void this.#fire(t, slot, { ...j, tag: slot.trigger.tag, reason: slot.trigger.describe(j) });
      return;
    }
  }

  /** Whether a target may fire now: not busy, not cooling down, not done. */
  #ready(t: Target): boolean {
    return !t.busy && !t.exited && Date.now() >= t.cooldownUntil && !this.#done(t) && !this.#o.signal.aborted;
  }

  /** Runs the actions of one firing; the sustain timers restart and the cooldown starts when they end. */
  #fire(t: Target, slot: TriggerSlot, firing: Firing): Promise<void> {
    t.busy = true;
    t.firings++;
    this.#firings++;
    slot.state.fired++;
    for (const s of t.slots) s.since = undefined;
    this.#emit({ type: 'fire', target: t.info, firing, index: t.firings });
    const run = this.#runActions(t, firing).finally(() => {
      t.busy = false;
      t.cooldownUntil = Date.now() + this.#o.cooldownMs;
      this.#inflight.delete(run);
      if (this.#done(t)) t.events.abort();
      this.#nudge();
    });
    this.#inflight.add(run);
    return run;
  }

  /** Starts the event-driven triggers of a new target. */
  #subscribe(t: Target): void {
    for (const slot of t.slots) {
      const { trigger } = slot;
      if (!trigger.subscribe) continue;
      const fire = async (j: Judgement, reason: string, dump?: DumpFn): Promise<boolean> => {
        if (trigger.sustain) {
          if (!j.met) {
            slot.since = undefined;
            return false;
          }
          slot.since ??= Date.now();
          if (Date.now() - slot.since < this.#o.sustainMs) return false;
        }
        if (!this.#ready(t) || trigger.limit(slot.state) <= 0) return false;
        await this.#fire(t, slot, { ...j, tag: trigger.tag, reason, ...(dump ? { dump } : {}) });
        return true;
      };
      const watching = trigger.subscribe(t.info.pid, fire, t.events.signal).catch((e: unknown) => {
        this.#emit({
          type: 'error',
          target: t.info,
          firing: undefined,
          kind: trigger.tag,
          error: e as Error,
        });
        this.#failed = true;
        this.#nudge();
      });
      this.#inflight.add(watching);
      void watching.finally(() => this.#inflight.delete(watching));
    }
  }

  async #runActions(t: Target, firing: Firing): Promise<void> {
    const ctx: ActionContext = {
      target: t.info,
      firing,
      time: new Date(),
      history: [...t.history],
      signal: this.#o.signal,
      written: new Map(),
    };
    for (const action of this.#o.actions) {
      try {
        const r = await action.run(ctx);
        if (r.path) this.#written.push(r.path);
        this.#emit({
          type: 'action',
          target: t.info,
          firing,
          kind: action.kind,
          message: r.message,
          ...(r.path ? { path: r.path } : {}),
        });
      } catch (e) {
        this.#emit({ type: 'error', target: t.info, firing, kind: action.kind, error: e as Error });
        // A later action must not run on a missing input (no exec on a dump that failed).
        return;
      }
    }
  }

  /** A target is done when it has its count, or every trigger is spent. */
  #done(t: Target): boolean {
    return t.firings >= this.#o.count || t.slots.every((s) => s.trigger.limit(s.state) <= 0);
  }

  /** The monitor ends when every target seen is done or gone and none has work in flight. */
  #finished(): boolean {
    if (this.#targets.size === 0) return false; // -w and -pgid wait for a first match
    for (const t of this.#targets.values()) if (t.busy || !(t.exited || this.#done(t))) return false;
    return true;
  }

  #matches(pid: number, comm: string | null | undefined, pgid: number | null | undefined): boolean {
    const spec = this.#o.target;
    if ('pgid' in spec) return pgid === spec.pgid;
    if (!('name' in spec) || typeof comm !== 'string') return false;
    // comm is cut at 15 bytes; the name ProcDump matches is argv[0]'s basename.
    if (!spec.name.startsWith(comm) && comm !== spec.name) return false;
    return processName(pid) === spec.name.replace(/[^A-Za-z0-9]/g, '_') || comm === spec.name;
  }

  #checkGroup(pgid: number): void {
    try {
      const stat = readFileSync(`/proc/${pgid}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid) return;
    } catch {
      // no leader: look for any member below
    }
    // The leader may have exited while members remain: the discovery sweep will find them; but a group
    // with no member at all is a mistake worth saying at once.
    const members = new Sampler({ all: true, fields: ['pgid'] });
    try {
      for (const r of members.sample().records()) if (r.pgid === pgid) return;
    } finally {
      members.close();
    }
    throw new UsageError(`no process is in process group ${pgid}`, '-pgid');
  }

  #tryAdd(sampler: Sampler, pid: number): void {
    try {
      this.#add(sampler, pid);
    } catch (e) {
      if (!(e instanceof ProcessGoneError)) throw e;
    }
  }

  #add(sampler: Sampler, pid: number): void {
    // A pid seen before is a new target only if the old one has exited (the pid was reused).
    if (this.#targets.get(pid)?.exited === false) return;
    const id = sampler.watch(pid);
    const info: TargetInfo = { pid, startTime: id.startTime, name: processName(pid) };
    const target: Target = {
      info,
      events: new AbortController(),
      slots: this.#o.triggers.map((trigger) => ({ trigger, state: { fired: 0 }, since: undefined })),
      history: [],
      firings: 0,
      busy: false,
      cooldownUntil: 0,
      exited: false,
    };
    this.#targets.set(pid, target);
    this.#emit({ type: 'target', target: info });
    this.#subscribe(target);
  }
}
