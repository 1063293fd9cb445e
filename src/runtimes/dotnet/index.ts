// tripdump/dotnet: the .NET runtime over its diagnostics socket (dumps, counters, EventPipe, triggers).
export {
  type DotnetCountersOptions,
  type DotnetProcessInfo,
  dotnetCounters,
  dotnetProcessInfo,
} from './api.js';
export { DotnetConnection, dotnetConnections } from './connection.js';
export { type DotnetFacts, detectDotnet } from './detect.js';
export {
  DOTNET_DUMP_TYPES,
  type DotnetDumpOptions,
  type DotnetDumpResult,
  type DotnetDumpType,
  type RuntimeDumpResult,
  writeDotnetDump,
  writeRuntimeAwareDump,
} from './dump.js';
export {
  DotnetMetricsSessionError,
  DotnetProtocolError,
  DotnetRuntimeError,
  DotnetTimeoutError,
  DotnetUnavailableError,
  DotnetUntrustedSocketError,
  type NoPortReason,
  type SocketHolder,
} from './errors.js';
export type { CounterValue, MetricsNotice } from './events.js';
export type { ProcessInfo } from './ipc.js';
export { NettraceParser, type TraceEvent } from './nettrace.js';
export {
  type CounterSpec,
  CounterTrigger,
  ExceptionTrigger,
  GcGenerationTrigger,
  type GcHeap,
  GcMemoryTrigger,
} from './triggers.js';
