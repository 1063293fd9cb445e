// tripdump's public API.

export { type CoreDumpOptions, type CoreDumpResult, type DumpMode, writeCoreDump } from './dump/core.js';
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
  DEFAULT_FIELDS,
  FIELD_INFO,
  FIELD_NAMES,
  type FieldName,
  type ProcessRecord,
  type Source,
} from './sampler/fields.js';
export { Sampler, type SamplerOptions, type WatchOptions } from './sampler/sampler.js';
export { type HostSample, type ProcessIdentity, ROW_NEW, ROW_THREAD, Snapshot } from './sampler/snapshot.js';
