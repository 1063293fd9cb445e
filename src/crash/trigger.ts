// The `crash` trigger: a CrashListener with filters. The monitor subscribes; actions run per crash.
import { type CrashInfo, CrashListener, DEFAULT_SOCKET } from './protocol.js';

export interface CrashFilter {
  /** Matches the executable's name (%e) or the basename of its path; a string matches exactly. */
  exe?: string | RegExp;
  uids?: readonly number[];
  signals?: readonly number[];
}

export function matchesCrash(info: CrashInfo, filter: CrashFilter): boolean {
  if (filter.uids && !filter.uids.includes(info.uid)) return false;
  if (filter.signals && !filter.signals.includes(info.signal)) return false;
  if (filter.exe !== undefined) {
    const names = [
      info.exeName,
      info.exePath
        .replace(/ \(deleted\)$/, '')
        .split('/')
        .pop() ?? '',
    ];
    const ok =
      typeof filter.exe === 'string'
        ? names.includes(filter.exe)
        : names.some((n) => (filter.exe as RegExp).test(n));
    if (!ok) return false;
  }
  return true;
}

export interface CrashTriggerOptions extends CrashFilter {
  /** The socket the handler notifies (the `socket=` line of its config). */
  socketPath?: string;
  /** Listening failed, or a bad message arrived. Default: thrown away. */
  onError?: (e: Error) => void;
}

export class CrashTrigger {
  readonly tag = 'crash';
  readonly options: CrashTriggerOptions;
  /** Settles once the socket listens (or failed to), for callers that must know before going on. */
  ready: Promise<void> = Promise.resolve();

  constructor(options: CrashTriggerOptions = {}) {
    this.options = options;
  }

  /** Starts listening; onCrash runs for every crash that passes the filters until `signal` aborts. */
  subscribe(onCrash: (info: CrashInfo) => void, signal: AbortSignal): void {
    const listener = new CrashListener(this.options.socketPath ?? DEFAULT_SOCKET);
    const onError = this.options.onError ?? (() => {});
    listener.on('crash', (info) => {
      if (matchesCrash(info, this.options)) onCrash(info);
    });
    listener.on('warning', onError);
    listener.on('error', onError);
    if (signal.aborted) return;
    this.ready = listener.listen().then(
      () => {
        if (signal.aborted) void listener.close();
      },
      (e: Error) => {
        onError(e);
        throw e;
      },
    );
    this.ready.catch(() => {});
    signal.addEventListener('abort', () => void listener.close(), { once: true });
  }
}
