// The sampler's field vocabulary. Each field comes from one /proc source; asking for a field makes the
// sampler keep that source's fd open for every watched process, so callers pay only for what they ask.

/** Where a field is read from. */
export type Source = 'stat' | 'statm' | 'status' | 'io' | 'fd' | 'socket';

/**
 * Every per-process field, with its unit and source. The order is the native column order: the addon
 * checks at load time that it agrees (src/native.ts).
 */
export const FIELD_INFO = {
  pid: { source: 'stat', doc: 'process (or thread) id' },
  tgid: { source: 'stat', doc: 'thread group id: the pid for a process row, its process for a thread row' },
  ppid: { source: 'stat', doc: 'parent pid' },
  pgid: { source: 'stat', doc: 'process group id' },
  state: { source: 'stat', doc: 'one-letter state: R S D Z T t X I' },
  comm: { source: 'stat', doc: 'command name as the kernel reports it (may hold spaces and parentheses)' },
  startTime: { source: 'stat', doc: 'start time, milliseconds since the epoch (10 ms resolution)' },
  cpuPercent: { source: 'stat', doc: 'CPU over the last interval, percent of one core (may exceed 100)' },
  userTicks: { source: 'stat', doc: 'user CPU time, clock ticks (USER_HZ, 100 per second)' },
  systemTicks: { source: 'stat', doc: 'system CPU time, clock ticks' },
  rssBytes: { source: 'stat', doc: 'resident set size, bytes' },
  vmBytes: { source: 'stat', doc: 'virtual memory size, bytes' },
  minorFaults: { source: 'stat', doc: 'minor page faults since start' },
  majorFaults: { source: 'stat', doc: 'major page faults since start' },
  threads: { source: 'stat', doc: 'number of threads' },
  sharedBytes: { source: 'statm', doc: 'resident file-backed and shared memory, bytes' },
  textBytes: { source: 'statm', doc: 'text (code) size, bytes' },
  dataBytes: { source: 'statm', doc: 'data + stack size, bytes' },
  rssAnonBytes: { source: 'status', doc: 'resident anonymous memory (RssAnon), bytes' },
  rssFileBytes: { source: 'status', doc: 'resident file mappings (RssFile), bytes' },
  rssShmemBytes: { source: 'status', doc: 'resident shared memory (RssShmem), bytes' },
  swapBytes: { source: 'status', doc: 'swapped-out anonymous memory (VmSwap), bytes' },
  hwmBytes: { source: 'status', doc: 'peak resident set size (VmHWM), bytes' },
  uid: { source: 'status', doc: 'real user id' },
  readBytes: { source: 'io', doc: 'bytes read from storage (read_bytes)' },
  writeBytes: { source: 'io', doc: 'bytes written to storage (write_bytes)' },
  readChars: { source: 'io', doc: 'bytes passed to read() and similar (rchar)' },
  writeChars: { source: 'io', doc: 'bytes passed to write() and similar (wchar)' },
  fds: { source: 'fd', doc: 'open file descriptors' },
  sockets: { source: 'socket', doc: 'open socket descriptors (opt-in: one readlink per fd)' },
} as const satisfies Record<string, { source: Source; doc: string }>;

export type FieldName = keyof typeof FIELD_INFO;
export const FIELD_NAMES = Object.keys(FIELD_INFO) as FieldName[];

/** Fields returned when the caller does not choose: everything that comes from `stat` (one read). */
export const DEFAULT_FIELDS: readonly FieldName[] = FIELD_NAMES.filter(
  (f) => FIELD_INFO[f].source === 'stat',
);

/** Values of one process in one snapshot. `null` means unavailable (permission, not applicable, first sample). */
export type ProcessRecord = {
  [K in FieldName]?: K extends 'comm' | 'state' ? string | null : number | null;
} & { pid: number };
