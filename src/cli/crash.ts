// `tripdump crash-handler install|uninstall|status|list|info|listen`: capture every crash on the host.
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import {
  CoreSocketServer,
  DEFAULT_CONFIG,
  DEFAULT_CORE_SOCKET,
  DEFAULT_DIR,
  install,
  readConfig,
  status,
  uninstall,
} from '../crash/install.js';
import { CrashListener, DEFAULT_SOCKET } from '../crash/protocol.js';
import { findCrash, listCrashes } from '../crash/store.js';
import { UsageError } from '../errors.js';
import { EXIT, interruptSignal, parseOptions } from './common.js';
import { escapeControl, formatBytes, toJson } from './format.js';

export const CRASH_USAGE = `Usage: tripdump crash-handler <install|uninstall|status|list|info|listen> [options]

Captures the core of every process that crashes on this host (core_pattern), keeps a JSON of facts
beside it, and notifies a running tripdump (watch --on-crash) over a Unix socket.

  install [--dir DIR] [--max-use SIZE] [--keep-free SIZE|PCT%] [--notify SOCKET] [--pipe-limit N]
          [--socket [PATH]]
                    save core_pattern and core_pipe_limit, then install tripdump's handler
                    (default DIR ${DEFAULT_DIR}; SIZE like 500M, 2G). --socket uses the kernel's
                    socket mode (Linux 6.16+, @PATH, default ${DEFAULT_CORE_SOCKET}): a running
                    \`tripdump crash-handler listen --serve\` receives the cores, no process per crash
  uninstall [--force] put back exactly the saved core_pattern and core_pipe_limit
  status [--json]     what core_pattern holds, tripdump's settings, what uninstall restores
  list [--json]       captured crashes: time, pid, uid, signal, exe, core file, size, present/missing
  info ID|PID|NAME [--json]
                      one crash (by id, or the latest of a pid or executable name)
  listen [--serve [PATH]] [--json]
                      print each crash notification as it arrives (--serve: also receive cores in
                      socket mode)

  --config FILE       handler settings (default ${DEFAULT_CONFIG}; root-owned, read per crash)
`;

const SIGNALS = new Map(Object.entries(constants.signals).map(([k, v]) => [v as number, k]));

function parseSize(option: string, value: string | undefined): number {
  const m = value?.trim().match(/^(\d+)\s*([KMGT]?)(i?B)?$/i);
  if (!m) throw new UsageError(`${option} needs a size such as 500M or 2G, got '${value ?? ''}'`, option);
  const shift = { '': 0, K: 10, M: 20, G: 30, T: 40 }[(m[2] ?? '').toUpperCase()] ?? 0;
  return Number(m[1]) * 2 ** shift;
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
      let keepFree = 0;
      let keepFreePercent = 0;
      const kf = values['keep-free'];
      if (kf !== undefined) {
        const pct = kf.match(/^(\d{1,2}|100)%$/);
        if (pct) keepFreePercent = Number(pct[1]);
        else keepFree = parseSize('--keep-free', kf);
      }
      const pipeLimit = values['pipe-limit'];
      if (pipeLimit !== undefined && !/^\d+$/.test(pipeLimit))
        throw new UsageError(`--pipe-limit needs a whole number, got '${pipeLimit}'`, '--pipe-limit');
      const coreSocket = values.socket ? (args[0] ?? DEFAULT_CORE_SOCKET) : undefined;
      const r = install({
        configPath,
        dir: values.dir,
        socket: values.notify,
        maxUse: values['max-use'] !== undefined ? parseSize('--max-use', values['max-use']) : 0,
        keepFree,
        keepFreePercent,
        coreSocket,
        pipeLimit: pipeLimit === undefined ? undefined : Number(pipeLimit),
      });
      out.write(
        `installed: ${r.pattern}\nsaved:     ${r.previous.replace(/\n$/, '')}\ncores in:  ${r.config.dir}\n`,
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
      const dir = values.dir ?? readConfig(configPath)?.dir ?? DEFAULT_DIR;
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
      const dir = values.dir ?? readConfig(configPath)?.dir ?? DEFAULT_DIR;
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
