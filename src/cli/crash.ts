// `tripdump crash-handler install|uninstall|status|list|info|listen`: capture every crash on the host.
import { existsSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import {
  CoreSocketServer,
  CRASH_LIMITS,
  DEFAULT_CONFIG,
  DEFAULT_CORE_SOCKET,
  DEFAULT_DIR,
  DEFAULT_PIPE_LIMIT,
  install,
  readConfig,
  status,
  uninstall,
} from '../crash/install.js';
import { CrashListener, DEFAULT_SOCKET } from '../crash/protocol.js';
import { findCrash, listCrashes } from '../crash/store.js';
import { UsageError } from '../errors.js';
import { EXIT, interruptSignal, parseOptions, refusePadding } from './common.js';
import { escapeControl, formatBytes, toJson } from './format.js';

export const CRASH_USAGE = `Usage: tripdump crash-handler <install|uninstall|status|list|info|listen> [options]

Captures the core of every process that crashes on this host (core_pattern), keeps a JSON of facts
beside it, and notifies a running tripdump (watch --on-crash) over a Unix socket.

  install [--dir DIR] [--max-use SIZE] [--keep-free SIZE|PCT%] [--notify SOCKET] [--pipe-limit N]
          [--socket [PATH]]
                    save core_pattern and core_pipe_limit, then install tripdump's handler
                    (default DIR ${DEFAULT_DIR}; a DIR others can write to gets a private
                    tripdump-crashes folder inside, it is never chmod-ed; SIZE 1M to 1P, like 500M, 2G;
                    PCT 1 to 99; N 0 to 65536, default ${DEFAULT_PIPE_LIMIT}: how many crashes the
                    kernel holds for the handler at once, so that it can read their /proc facts).
                    --socket uses the kernel's socket mode (Linux 6.16+, @PATH, default
                    ${DEFAULT_CORE_SOCKET}): a running \`tripdump crash-handler listen --serve\`
                    receives the cores, no process per crash
  uninstall [--force] put back exactly the saved core_pattern and core_pipe_limit
  status [--json]     what core_pattern holds, tripdump's settings, what uninstall restores
  list [--dir DIR] [--json]
                      captured crashes: time, pid, uid, signal, exe, core file, size, present/missing
                      (DIR: default the installed one; it must exist)
  info ID|PID|NAME [--json]
                      one crash (by id, or the latest of a pid or executable name)
  listen [--serve [PATH]] [--json]
                      print each crash notification as it arrives (--serve: also receive cores in
                      socket mode)

  --config FILE       handler settings (default ${DEFAULT_CONFIG}; root-owned, read per crash)
`;

const SIGNALS = new Map(Object.entries(constants.signals).map(([k, v]) => [v as number, k]));

/** A size option (500M, 2G...), within CRASH_LIMITS.size: 1M to 1P. */
function parseSize(option: string, value: string | undefined): number {
  refusePadding(option, value);
  const m = value?.match(/^(\d+)\s*([KMGTP]?)(i?B)?$/i);
  if (!m) throw new UsageError(`${option} needs a size such as 500M or 2G, got '${value ?? ''}'`, option);
  const shift = { '': 0, K: 10, M: 20, G: 30, T: 40, P: 50 }[(m[2] ?? '').toUpperCase()] ?? 0;
  const bytes = Number(m[1]) * 2 ** shift;
  const { min, max } = CRASH_LIMITS.size;
  if (!Number.isSafeInteger(bytes) || bytes < min || bytes > max)
    throw new UsageError(`${option} must be from 1M to 1P, got '${value}'`, option);
  return bytes;
}

/**
 * The folder list and info read: --dir, else the installed config's, else the default. It must exist: a
 * missing folder is an error naming it, not an empty list.
 */
function crashFolder(dirOption: string | undefined, configPath: string): string {
  const configured = readConfig(configPath)?.dir;
  const dir = dirOption ?? configured ?? DEFAULT_DIR;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (e) {
    const from =
      dirOption !== undefined
        ? '--dir'
        : configured !== undefined
          ? `the folder set in ${configPath}`
          : 'the default folder; is the crash handler installed? see `tripdump crash-handler status`';
    throw new UsageError(
      `no crash folder ${dir} (${from}): ${(e as NodeJS.ErrnoException).code ?? e}`,
      '--dir',
    );
  }
  if (!isDir) throw new UsageError(`${dir} is not a folder`, '--dir');
  return dir;
}

function parse(argv: string[]) {
  return parseOptions(argv, {
    config: { type: 'string' },
    dir: { type: 'string' },
    'max-use': { type: 'string' },
    'keep-free': { type: 'string' },
    notify: { type: 'string' },
    'pipe-limit': { type: 'string' },
    socket: { type: 'boolean' },
    serve: { type: 'boolean' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new UsageError(`${what} changes /proc/sys/kernel/core_pattern: run it as root`);
}

function signalName(n: number): string {
  return SIGNALS.get(n) ?? String(n);
}

export async function crashHandlerCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parse(argv);
  const [sub, ...args] = positionals;
  if (values.help || sub === undefined) {
    out.write(CRASH_USAGE);
    return sub === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  const configPath = values.config ?? DEFAULT_CONFIG;
  const json = (v: unknown) => out.write(`${toJson(v, 2)}\n`);
  switch (sub) {
    case 'install': {
      requireRoot('install');
      // Every value is checked here and again by install(), before anything is written.
      let keepFree: number | undefined;
      let keepFreePercent: number | undefined;
      const kf = values['keep-free'];
      if (kf !== undefined) {
        const pct = kf.match(/^(\d+)%$/);
        if (pct) {
          keepFreePercent = Number(pct[1]);
          const { min, max } = CRASH_LIMITS.keepFreePercent;
          if (keepFreePercent < min || keepFreePercent > max)
            throw new UsageError(`--keep-free must be from ${min}% to ${max}%, got '${kf}'`, '--keep-free');
        } else keepFree = parseSize('--keep-free', kf);
      }
      const pipeLimitText = values['pipe-limit'];
      let pipeLimit: number | undefined;
      if (pipeLimitText !== undefined) {
        const { min, max } = CRASH_LIMITS.pipeLimit;
        pipeLimit = /^\d+$/.test(pipeLimitText) ? Number(pipeLimitText) : Number.NaN;
        if (!(pipeLimit >= min && pipeLimit <= max))
          throw new UsageError(
            `--pipe-limit must be a whole number from ${min} to ${max}, got '${pipeLimitText}'`,
            '--pipe-limit',
          );
      }
      const coreSocket = values.socket ? (args[0] ?? DEFAULT_CORE_SOCKET) : undefined;
      const r = install({
        configPath,
        dir: values.dir,
        socket: values.notify,
        maxUse: values['max-use'] !== undefined ? parseSize('--max-use', values['max-use']) : undefined,
        keepFree,
        keepFreePercent,
        coreSocket,
        pipeLimit,
      });
      out.write(
        `installed: ${r.pattern}\nsaved:     ${r.previous.replace(/\n$/, '')}\ncores in:  ${r.config.dir}\ncore_pipe_limit: ${r.pipeLimit} (was ${r.previousPipeLimit}; restored by uninstall)\n`,
      );
      if (r.note) out.write(`note: ${r.note}\n`);
      if (r.pipeLimit === 0)
        out.write(
          'warning: with core_pipe_limit 0 the kernel does not wait for the handler: most crashes will lack exe, cmdline, cwd and cgroup\n',
        );
      if (coreSocket && !existsSync(coreSocket))
        out.write(
          `warning: nothing listens on ${coreSocket} yet: crashes are not dumped until \`tripdump crash-handler listen --serve\` runs\n`,
        );
      return EXIT.ok;
    }
    case 'uninstall': {
      requireRoot('uninstall');
      const r = uninstall({ configPath, force: values.force });
      out.write(`restored: ${r.restored}\n`);
      return EXIT.ok;
    }
    case 'status': {
      const s = status(configPath);
      if (values.json) json(s);
      else
        out.write(
          [
            `core_pattern:    ${s.corePattern}`,
            `core_pipe_limit: ${s.corePipeLimit}`,
            `tripdump:        ${s.mode === 'none' ? 'not installed' : `installed (${s.mode} mode)`}`,
            ...(s.saved !== undefined ? [`uninstall restores: ${s.saved}`] : []),
            ...(s.config
              ? [
                  `config:          ${s.configPath}`,
                  `cores in:        ${s.config.dir}`,
                  `notifies:        ${s.config.socket}`,
                  `max-use:         ${s.config.maxUse ? formatBytes(s.config.maxUse) : 'no limit'}`,
                  `keep-free:       ${s.config.keepFreePercent ? `${s.config.keepFreePercent}%` : s.config.keepFree ? formatBytes(s.config.keepFree) : 'no limit'}`,
                ]
              : []),
            `socket mode:     ${s.socketModeSupported ? 'supported by this kernel' : 'not supported (needs Linux 6.16+)'}`,
            '',
          ].join('\n'),
        );
      return EXIT.ok;
    }
    case 'list': {
      const dir = crashFolder(values.dir, configPath);
      const all = listCrashes(dir);
      if (values.json) {
        json(all);
        return EXIT.ok;
      }
      const rows = all.map((c) => [
        new Date(c.time * 1000).toISOString().replace('T', ' ').slice(0, 19),
        String(c.pid),
        String(c.uid),
        signalName(c.signal),
        c.coreStored ? (c.present ? 'present' : 'missing') : 'none',
        c.coreStored ? formatBytes(c.coreSize) : '-',
        c.id,
        escapeControl(c.exe ?? c.comm),
      ]);
      const head = ['TIME', 'PID', 'UID', 'SIG', 'COREFILE', 'SIZE', 'ID', 'EXE'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
      for (const r of [head, ...rows])
        out.write(`${r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i] ?? 0))).join('  ')}\n`);
      if (!rows.length) out.write(`(no crashes captured in ${dir})\n`);
      return EXIT.ok;
    }
    case 'info': {
      if (!args[0]) throw new UsageError('info needs a crash id, a pid or an executable name');
      const dir = crashFolder(values.dir, configPath);
      const c = findCrash(dir, args[0]);
      if (values.json) {
        json(c);
        return EXIT.ok;
      }
      const lines: [string, string][] = [
        ['ID', c.id],
        ['PID', `${c.pid}${c.nsPid !== c.pid ? ` (${c.nsPid} in its namespace)` : ''}`],
        ['UID/GID', `${c.uid}/${c.gid}`],
        ['Signal', `${c.signal} (${signalName(c.signal)})`],
        ['Time', new Date(c.time * 1000).toISOString()],
        ['Executable', c.exe ?? `(unknown; comm ${JSON.stringify(c.comm)})`],
        ['Command line', (c.cmdline ?? []).map((a) => JSON.stringify(a)).join(' ')],
        ['Cgroup', (c.cgroup ?? '').replace(/\n/g, '; ')],
        ['Hostname', c.hostname],
        [
          'Core file',
          c.coreFile
            ? `${c.coreFile} (${c.present ? 'present' : 'missing'}, ${formatBytes(c.coreSize)}, ${formatBytes(c.diskSize)} on disk)`
            : `not kept${c.error ? `: ${c.error}` : ''}`,
        ],
        ['Metadata', c.metadataFile],
        ['Capture', `${c.captureMs} ms (${c.mode} mode)`],
      ];
      for (const [k, v] of lines) out.write(`${k.padStart(13)}: ${escapeControl(v)}\n`);
      return EXIT.ok;
    }
    case 'listen': {
      const signal = interruptSignal();
      const cfg = readConfig(configPath);
      const listener = new CrashListener(values.notify ?? cfg?.socket ?? DEFAULT_SOCKET);
      listener.on('crash', (c) => {
        if (values.json) out.write(`${toJson({ ...c, exeNameRaw: c.exeNameRaw.toString('hex') })}\n`);
        else
          out.write(
            `${c.time.toISOString()} pid ${c.pid} uid ${c.uid} ${signalName(c.signal)} ${escapeControl(`${JSON.stringify(c.exeName)} ${c.coreFile ?? `(core not kept${c.error ? `: ${c.error}` : ''})`}`)}\n`,
          );
      });
      listener.on('warning', (e) => process.stderr.write(`tripdump: ${e.message}\n`));
      await listener.listen();
      let server: CoreSocketServer | undefined;
      if (values.serve) {
        server = new CoreSocketServer(args[0] ?? DEFAULT_CORE_SOCKET, configPath);
        await server.start(signal);
      }
      process.stderr.write(`listening on ${listener.path}${server ? ` and ${server.socketPath}` : ''}\n`);
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      await server?.stop();
      await listener.close();
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown crash-handler command '${sub}'`);
  }
}
