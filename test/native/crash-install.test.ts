// `tripdump crash-handler install` as a hostile or careless admin would run it (issue 12, "Crash handler
// installation"), through the real CLI and the real core_pattern: a folder given as a symlink, a shared
// folder such as /tmp, a folder owned by someone else, a planted link, and bad values of every option. An
// install happens whole (a crash is then really stored where it says) or leaves nothing behind; an
// existing folder's mode and owner never change. core_pattern and core_pipe_limit are restored byte for
// byte whatever happened (withCorePattern).
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import {
  CORE_PATTERN,
  CORE_PIPE_LIMIT,
  installedHandlerPath,
  readConfig,
  statePath,
} from '../../src/crash/install.js';
import { type CrashInfo, CrashListener } from '../../src/crash/protocol.js';
import { listCrashes } from '../../src/crash/store.js';
import { withCorePattern } from '../helpers/host-state.js';
import { spawnTarget, trackProcesses } from '../helpers/processes.js';
import { needsRoot } from '../helpers/requirements.js';

const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
const isRoot = needsRoot('crash-install.test.ts: changing core_pattern');
const track = trackProcesses();

function tripdump(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, 'crash-handler', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A fresh private folder for the config (and the handler copy beside it). */
function scratch(): string {
  return mkdtempSync(path.join('/tmp', 'tdci-'));
}

/** Crashes the fixture once and returns what the listener was told. */
async function crashOnce(notify: string): Promise<CrashInfo> {
  const listener = new CrashListener(notify);
  const got: CrashInfo[] = [];
  listener.on('crash', (c) => got.push(c));
  await listener.listen();
  try {
    const target = track(
      await spawnTarget('crasher', [], {
        stdin: true,
        wrapper: ['sh', '-c', 'ulimit -c unlimited; exec "$0" "$@"'],
      }),
    );
    target.child.stdin!.write('go\n');
    await vi.waitFor(() => expect(got.length).toBe(1), { timeout: 20_000, interval: 20 });
    return got[0]!;
  } finally {
    await listener.close();
  }
}

function mode(p: string): string {
  const st = lstatSync(p);
  return `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
}

describe.skipIf(!isRoot)('crash-handler install: the folder it is given', () => {
  it('--dir LINK: the link is resolved once and the real folder stored; a crash is really captured', () =>
    withCorePattern(async () => {
      const root = scratch();
      try {
        const real = path.join(root, 'real');
        mkdirSync(real, { mode: 0o755 });
        const link = path.join(root, 'link');
        symlinkSync(real, link);
        // A link in a parent component counts as much as one at the end.
        const viaParent = path.join(root, 'parent-link');
        symlinkSync(root, viaParent);
        for (const [dir, expected] of [
          [link, real],
          [path.join(viaParent, 'real'), real],
        ] as const) {
          const config = path.join(root, 'c.conf');
          const notify = path.join(root, 'n.sock');
          const r = tripdump('install', '--config', config, '--dir', dir, '--notify', notify);
          expect(r.code, r.err).toBe(0);
          expect(r.out).toContain(`cores in:  ${expected}\n`);
          expect(readConfig(config)?.dir).toBe(expected);
          const n = await crashOnce(notify);
          expect(n.coreStored, n.error).toBe(true);
          expect(path.dirname(n.coreFile!)).toBe(expected);
          expect(listCrashes(real).map((c) => c.pid)).toContain(n.pid);
          expect(tripdump('uninstall', '--config', config).code).toBe(0);
          for (const f of readdirSync(real)) rmSync(path.join(real, f));
        }
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    }));

  it('--dir EXISTING never changes its mode or owner: a shared or foreign folder gets a private subfolder, said so', () =>
    withCorePattern(async () => {
      const root = scratch();
      try {
        const config = path.join(root, 'c.conf');
        const notify = path.join(root, 'n.sock');
        // Like /tmp (sticky, world-writable), group-writable, owned by nobody, and private (used as is).
        const shared = path.join(root, 'shared');
        mkdirSync(shared);
        chmodSync(shared, 0o1777);
        const group = path.join(root, 'group');
        mkdirSync(group);
        chmodSync(group, 0o775);
        const foreign = path.join(root, 'foreign');
        mkdirSync(foreign, { mode: 0o755 });
        chownSync(foreign, 65534, 65534);
        const mine = path.join(root, 'mine');
        mkdirSync(mine);
        chmodSync(mine, 0o750);
        for (const dir of [shared, group, foreign, mine]) {
          const before = mode(dir);
          const r = tripdump('install', '--config', config, '--dir', dir, '--notify', notify);
          expect(r.code, r.err).toBe(0);
          expect(mode(dir)).toBe(before);
          const expected = dir === mine ? mine : path.join(dir, 'tripdump-crashes');
          expect(readConfig(config)?.dir).toBe(expected);
          if (dir === mine) expect(r.out).not.toContain('note:');
          else
            expect(r.out).toMatch(
              new RegExp(`note: ${dir} is .* cores go to the private folder ${expected}`),
            );
          const n = await crashOnce(notify);
          expect(n.coreStored, n.error).toBe(true);
          expect(path.dirname(n.coreFile!)).toBe(expected);
          expect(tripdump('uninstall', '--config', config).code).toBe(0);
          expect(mode(dir)).toBe(before);
        }
        // Installing again into the same shared folder reuses the private subfolder it made.
        expect(tripdump('install', '--config', config, '--dir', shared, '--notify', notify).code).toBe(0);
        expect(readConfig(config)?.dir).toBe(path.join(shared, 'tripdump-crashes'));
        expect(tripdump('uninstall', '--config', config).code).toBe(0);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    }));
});

describe.skipIf(!isRoot)('crash-handler install: all or nothing', () => {
  /** Runs a failing install and checks that it left nothing: no file, no folder, no sysctl changed. */
  function refused(args: string[], code: number, message: RegExp, setup?: (root: string) => void) {
    const root = scratch();
    try {
      setup?.(root);
      const before = readdirSync(root).sort();
      const pattern = readFileSync(CORE_PATTERN);
      const limit = readFileSync(CORE_PIPE_LIMIT);
      const config = path.join(root, 'conf', 'c.conf');
      const withDefaults = args.includes('--dir') ? args : [...args, '--dir', path.join(root, 'cores')];
      const r = tripdump('install', '--config', config, ...withDefaults);
      expect(r.code, `${args.join(' ')}: ${r.out}${r.err}`).toBe(code);
      expect(r.err).toMatch(message);
      expect(existsSync(config)).toBe(false);
      expect(existsSync(statePath(config))).toBe(false);
      const handler = installedHandlerPath(config);
      expect(existsSync(handler) && lstatSync(handler).isFile()).toBe(false);
      expect(readdirSync(root).sort()).toEqual(before);
      expect(readFileSync(CORE_PATTERN).equals(pattern)).toBe(true);
      expect(readFileSync(CORE_PIPE_LIMIT).equals(limit)).toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  it('every bad value is refused before anything is written, naming the option', () =>
    withCorePattern(async () => {
      refused(['--pipe-limit', '99999999999'], 2, /--pipe-limit must be a whole number from 0 to 65536/);
      refused(['--pipe-limit', '-1'], 2, /--pipe-limit/);
      refused(['--pipe-limit', '1e3'], 2, /--pipe-limit/);
      refused(['--pipe-limit', ''], 2, /--pipe-limit/);
      refused(['--max-use', '99999999999T'], 2, /--max-use must be from 1M to 1P/);
      refused(['--max-use', '0'], 2, /--max-use must be from 1M to 1P/);
      refused(['--max-use', '2P'], 2, /--max-use/);
      refused(['--max-use', 'lots'], 2, /--max-use needs a size/);
      refused(['--keep-free', '100%'], 2, /--keep-free must be from 1% to 99%/);
      refused(['--keep-free', '0%'], 2, /--keep-free/);
      refused(['--keep-free', '5000P'], 2, /--keep-free/);
      // A --dir that is a file, that runs through a file, or that holds a newline (it would inject
      // config lines).
      refused(['--dir', '/etc/hostname'], 2, /is not a folder/);
      refused(['--dir', '/etc/hostname/cores'], 2, /is not a folder/);
      refused(['--dir', '/tmp/a\nmax_use=0'], 2, /newline/);
    }));

  it('a shared folder with a planted link is refused; a --config in a folder others can write is refused', () =>
    withCorePattern(async () => {
      const root = scratch();
      try {
        const shared = path.join(root, 'shared');
        mkdirSync(shared);
        chmodSync(shared, 0o1777);
        symlinkSync('/etc', path.join(shared, 'tripdump-crashes'));
        const config = path.join(root, 'c.conf');
        const r = tripdump('install', '--config', config, '--dir', shared);
        expect(r.code).toBe(2);
        expect(r.err).toMatch(/tripdump-crashes already exists but is not a private folder/);
        expect(existsSync(config)).toBe(false);
        const open = path.join(root, 'open');
        mkdirSync(open);
        chmodSync(open, 0o777);
        const r2 = tripdump(
          'install',
          '--config',
          path.join(open, 'c.conf'),
          '--dir',
          path.join(root, 'cores'),
        );
        expect(r2.code).toBe(2);
        expect(r2.err).toMatch(/config folder .* can be written by others/);
        expect(readdirSync(open)).toEqual([]);
        expect(existsSync(path.join(root, 'cores'))).toBe(false);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    }));

  it('a step that fails half-way is undone: config, folders and sysctls back as they were', () =>
    withCorePattern(async () => {
      // The handler copy's place is taken by a folder: copying fails after the folders and the config
      // were written, and install must take them back.
      refused(
        ['--dir', path.join('/tmp', `tdci-never-${process.pid}`, 'a', 'b')],
        1,
        /EISDIR|rename/,
        (root) => {
          mkdirSync(path.join(root, 'conf'));
          chmodSync(path.join(root, 'conf'), 0o700);
          mkdirSync(installedHandlerPath(path.join(root, 'conf', 'c.conf')));
        },
      );
      expect(existsSync(path.join('/tmp', `tdci-never-${process.pid}`))).toBe(false);
    }));
});

describe.skipIf(!isRoot)('crash-handler list and info: the folder must exist', () => {
  it('names the missing folder and exits 2, whatever the command and however the folder was given', () => {
    const root = scratch();
    try {
      const missing = path.join(root, 'missing');
      for (const args of [
        ['list', '--dir', missing],
        ['list', '--dir', missing, '--json'],
        ['info', '1234', '--dir', missing],
      ]) {
        const r = tripdump(...args);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.err).toContain(missing);
        expect(r.out).not.toContain('no crashes captured');
      }
      // From a config that names a folder that is gone.
      const config = path.join(root, 'c.conf');
      writeFileSync(config, `dir=${missing}\n`, { mode: 0o600 });
      const r = tripdump('list', '--config', config);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`${missing} (the folder set in ${config})`);
      // A file is not a folder.
      const r2 = tripdump('list', '--dir', config);
      expect(r2.code).toBe(2);
      expect(r2.err).toContain(`${config} is not a folder`);
      // An existing empty folder is a list with nothing in it.
      mkdirSync(missing);
      const r3 = tripdump('list', '--dir', missing);
      expect(r3.code).toBe(0);
      expect(r3.out).toContain(`(no crashes captured in ${missing})`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
