// tripdump's public API, `import … from 'tripdump'`: the sampler, the core writer, triggers, actions and the
// monitor. The rest is behind its own subpath (package.json `exports`), so this entry loads no YAML,
// schema, metrics or WebSocket code (test/unit/entry-points.test.ts): `tripdump/agent` (rules file, metrics
// endpoint), `tripdump/dotnet` (.NET runtime), `tripdump/node` (Node.js inspector), `tripdump/crash` (crash
// handler notifications).

export type { Action, ActionContext, ActionResult, HistoryEntry, TargetInfo } from './actions/action.js';
export { DumpAction, type DumpActionOptions } from './actions/dump.js';
export { ExecAction } from './actions/exec.js';
export {
  createFileSafely,
  HistoryAction,
  type SafeFile,
  SIDECAR_VERSION,
  sidecar,
  writeFileSafely,
} from './actions/history.js';
export { type CoreDumpOptions, type CoreDumpResult, type DumpMode, writeCoreDump } from './dump/core.js';
export { dumpPath, processName } from './dump/naming.js';
export {
  AbortError,
  AccessDeniedError,
  AlreadyTracedError,
  KernelThreadError,
  ProcessGoneError,
  SystemError,
  TripdumpError,
  UsageError,
  ZombieProcessError,
} from './errors.js';
export {
  Monitor,
  type MonitorEvent,
  type MonitorFailure,
  type MonitorOptions,
  type MonitorRule,
  type MonitorSummary,
  type TargetSpec,
} from './monitor/monitor.js';
export { detectRuntime, type RuntimeFacts } from './runtimes/detect.js';
export {
  DEFAULT_FIELDS,
  FIELD_INFO,
  FIELD_NAMES,
  type FieldName,
  type ProcessRecord,
  type Source,
} from './sampler/fields.js';
export { fdBudget, Sampler, type SamplerOptions, type WatchOptions } from './sampler/sampler.js';
export { type HostSample, type ProcessIdentity, ROW_NEW, ROW_THREAD, Snapshot } from './sampler/snapshot.js';
export {
  type SignalHit,
  SignalTrigger,
  SignalWatcher,
  type SignalWatcherOptions,
  signalNumber,
} from './triggers/signal.js';
export { KINDS, type ThresholdKind, ThresholdTrigger, TimerTrigger } from './triggers/threshold.js';
export type {
  DumpFn,
  FireFn,
  FireOptions,
  Firing,
  Judgement,
  Trigger,
  TriggerState,
  TriggerTag,
} from './triggers/trigger.js';
