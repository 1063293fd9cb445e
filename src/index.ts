// tripdump's public API.

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
export { type CrashInfo, CrashListener, decodeCrash, encodeCrash } from './crash/protocol.js';
export { CrashTrigger } from './crash/trigger.js';
export { type CoreDumpOptions, type CoreDumpResult, type DumpMode, writeCoreDump } from './dump/core.js';
export { dumpPath, processName } from './dump/naming.js';
export {
  AbortError,
  AccessDeniedError,
  AlreadyTracedError,
  ProcessGoneError,
  SystemError,
  TripdumpError,
  UsageError,
} from './errors.js';
export {
  Monitor,
  type MonitorEvent,
  type MonitorOptions,
  type MonitorSummary,
  type TargetSpec,
} from './monitor/monitor.js';
export {
  ConnectionPool,
  type Lease,
  type ProcessKey,
  processKey,
  type RuntimeConnection,
} from './runtimes/connections.js';
export { detectRuntime, type RuntimeKind } from './runtimes/detect.js';
export {
  type CaptureStackOptions,
  type CpuProfileOptions,
  captureNodeStack,
  defaultNodeOutputs,
  formatNodeStack,
  type HeapSnapshotResult,
  NODE_OUTPUTS,
  NodeCoreAction,
  type NodeFileOptions,
  type NodeFileResult,
  type NodeOutput,
  NodeOutputAction,
  type NodeOutputOptions,
  type NodeStack,
  nodeActions,
  type StackFrame,
  writeCpuProfile,
  writeHeapSnapshot,
  writeNodeReport,
} from './runtimes/node/actions.js';
export { CdpSession } from './runtimes/node/cdp.js';
export { handlesSigusr1, type InspectHints, inspectHints, isNodeProcess } from './runtimes/node/detect.js';
export { NodeInspectorError, type NodeInspectorReason } from './runtimes/node/errors.js';
export {
  NodeInspector,
  type NodeInspectorOptions,
  nodeInspectors,
  withNodeInspector,
} from './runtimes/node/inspector.js';
export { HeapUsedTrigger, type LoopDelayOptions, LoopDelayTrigger } from './runtimes/node/triggers.js';
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
  Firing,
  Judgement,
  Trigger,
  TriggerState,
  TriggerTag,
} from './triggers/trigger.js';
