// tripdump-crash-handler run the way the kernel runs it: the core on stdin, the pattern's fields as
// arguments (%P %p %u %g %s %t %c %h %e %d). No core_pattern change here.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { handlerPath } from '../../src/crash/install.js';
import { type CrashInfo, CrashListener } from '../../src/crash/protocol.js';
import { listCrashes } from '../../src/crash/store.js';

const isRoot = process.getuid?.() === 0;
let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function setup(extra = '') {
  const root = mkdtempSync(path.join(os.tmpdir(), 'tripdump-handler-'));
  dirs.push(root);
  const dir = path.join(root, 'cores');
  mkdirSync(dir, { mode: 0o755 });
  const sock = path.join(root, 'n.sock');
  const config = path.join(root, 'crash.conf');
  writeFileSync(config, `dir=${dir}\nsocket=${sock}\n${extra}`, { mode: 0o600 });
  return { root, dir, sock, config };
}

/** Runs the handler with `core` on stdin; resolves with its exit code and stderr. */
function runHandler(
  config: string,
  core: Buffer,
  fields: {
    pid?: number;
    uid?: number;
    gid?: number;
    signal?: number;
    time?: number;
    comm?: string | Buffer;
  } = {},
): Promise<{ code: number | null; stderr: string }> {
  const comm = fields.comm ?? 'crasher';
  const args = [
    '-c',
    config,
    String(fields.pid ?? process.pid),
    String(fields.pid ?? process.pid),
    String(fields.uid ?? 65534),
    String(fields.gid ?? 65534),
    String(fields.signal ?? 11),
    String(fields.time ?? 1_700_000_000),
    'unlimited',
    'testhost',
  ];
  // Node encodes argv as UTF-8, so raw bytes for %e go through the shell's printf.
  const octal = Buffer.from(comm).reduce((s, b) => `${s}\\${b.toString(8).padStart(3, '0')}`, '');
  return new Promise((resolve, reject) => {
    const child = spawn(
      'bash',
      ['-c', `c=$(printf '${octal}'); exec "$0" "$@" "$c" 1`, handlerPath(), ...args],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
    child.stdin.end(core);
  });
}

function fakeCore(size: number): Buffer {
  const b = Buffer.alloc(size);
  b.write('\x7fELF', 0, 'latin1');
  b.fill(0x41, 4096, 8192); // one data page, the rest zero (holes)
  b.fill(0x42, size - 100);
  return b;
}

describe('tripdump-crash-handler (pipe mode, run directly)', () => {
  it('stores a sparse core 0600 owned by the crashing uid, metadata beside it, and notifies', async () => {
    const { dir, sock, config } = setup();
    const listener = new CrashListener(sock);
    await listener.listen();
    const got: CrashInfo[] = [];
    listener.on('crash', (c) => got.push(c));
    try {
      const core = fakeCore(4 << 20);
      const r = await runHandler(config, core);
      expect(r).toEqual({ code: 0, stderr: '' });
      const id = `crasher_${process.pid}_1700000000`;
      const coreFile = path.join(dir, `${id}.core`);
      expect(readFileSync(coreFile).equals(core)).toBe(true);
      const st = lstatSync(coreFile);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.blocks * 512).toBeLessThan(64 * 1024); // holes for the zero pages
      if (isRoot) expect([st.uid, st.gid]).toEqual([65534, 65534]);
      const meta = JSON.parse(readFileSync(path.join(dir, `${id}.json`), 'utf8'));
      expect(meta).toMatchObject({
        id,
        pid: process.pid,
        uid: 65534,
        signal: 11,
        comm: 'crasher',
        hostname: 'testhost',
        exe: process.execPath,
        coreFile,
        coreSize: core.length,
        coreStored: true,
        mode: 'pipe',
      });
      expect(meta.cmdline).toEqual(readFileSync('/proc/self/cmdline', 'utf8').split('\0').slice(0, -1));
      expect(meta.status.PPid).toBe(String(process.ppid));
      expect(lstatSync(path.join(dir, `${id}.json`)).mode & 0o777).toBe(0o600);
      await vi.waitFor(() => expect(got).toHaveLength(1));
      expect(got[0]).toMatchObject({
        pid: process.pid,
        uid: 65534,
        signal: 11,
        exeName: 'crasher',
        coreFile,
        id,
      });
      expect(got[0]!.coreSize).toBe(core.length);
      expect(listCrashes(dir)).toMatchObject([{ id, present: true }]);
    } finally {
      await listener.close();
    }
  });

  it('treats hostile %e as data: slashes, dots, newlines, non-UTF-8', async () => {
    const { dir, config } = setup();
    const names: (string | Buffer)[] = [
      '../../etc/passwd',
      '..',
      'a\nb\tc',
      Buffer.from([0xff, 0xfe, 0x2f, 0x41]),
    ];
    for (const [i, comm] of names.entries()) {
      const r = await runHandler(config, fakeCore(8192), { comm, time: 1_700_000_000 + i });
      expect(r.code).toBe(0);
    }
    const files = readdirSync(dir).sort();
    expect(files).toHaveLength(8);
    for (const f of files) expect(f).toMatch(/^[A-Za-z0-9_]+_\d+_\d+\.(core|json)$/);
    const metas = listCrashes(dir);
    expect(metas.map((m) => m.comm)).toEqual(['../../etc/passwd', '..', 'a\nb\tc', '\ufffd\ufffd/A']);
    const raw = JSON.parse(readFileSync(metas[3]!.metadataFile, 'utf8'));
    expect(raw.commHex).toBe('fffe2f41');
    expect(existsSync('/etc/passwd.core')).toBe(false);
  });

  it('never follows a symlink planted at the target name', async () => {
    const { root, dir, config } = setup();
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'keep me');
    const id = `crasher_${process.pid}_1700000000`;
    symlinkSync(victim, path.join(dir, `${id}.core`));
    symlinkSync(victim, path.join(dir, `${id}.json`));
    expect((await runHandler(config, fakeCore(8192))).code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('keep me');
    expect(existsSync(path.join(dir, `${id}-1.core`))).toBe(true);
    expect(lstatSync(path.join(dir, `${id}-1.core`)).isFile()).toBe(true);
  });

  it('refuses a capture folder that is a symlink (or writable by others), and still drains the core', async () => {
    const { root, config } = setup();
    const real = path.join(root, 'real');
    mkdirSync(real);
    rmSync(path.join(root, 'cores'), { recursive: true });
    symlinkSync(real, path.join(root, 'cores'));
    const r = await runHandler(config, fakeCore(2 << 20));
    expect(r.code).toBe(0);
    // O_NOFOLLOW|O_DIRECTORY on a symlink: ENOTDIR (a symlink within the path: ELOOP).
    expect(r.stderr).toMatch(/Not a directory|symbolic links/);
    expect(readdirSync(real)).toEqual([]);

    rmSync(path.join(root, 'cores'));
    mkdirSync(path.join(root, 'cores'));
    chmodSync(path.join(root, 'cores'), 0o777);
    const r2 = await runHandler(config, fakeCore(8192));
    expect(r2.stderr).toMatch(/writable by group or others/);
    expect(readdirSync(path.join(root, 'cores'))).toEqual([]);
  });

  it('enforces max-use by removing the oldest captures, and skips a core larger than max-use', async () => {
    const { dir, config } = setup('max_use=600K\n');
    const dataCore = (n: number) => Buffer.alloc(n, 0x33);
    for (let i = 0; i < 3; i++) {
      expect((await runHandler(config, dataCore(256 << 10), { time: 1_700_000_000 + i })).code).toBe(0);
      // mtime order decides which capture is oldest
      const id = `crasher_${process.pid}_${1_700_000_000 + i}`;
      for (const ext of ['.core', '.json']) utimesSync(path.join(dir, id + ext), 1000 + i, 1000 + i);
    }
    const ids = listCrashes(dir).map((c) => c.id);
    expect(ids).toEqual([`crasher_${process.pid}_1700000001`, `crasher_${process.pid}_1700000002`]);
    const r = await runHandler(config, dataCore(1 << 20), { time: 1_700_000_010 });
    expect(r.stderr).toMatch(/larger than max-use/);
    const big = listCrashes(dir).find((c) => c.time === 1_700_000_010);
    expect(big).toMatchObject({ coreStored: false, coreFile: null });
  });

  it('drains and exits on bad arguments instead of leaving the kernel blocked', async () => {
    const child = spawn(handlerPath(), ['garbage'], { stdio: ['pipe', 'ignore', 'pipe'] });
    child.stdin.end(Buffer.alloc(1 << 20));
    const code = await new Promise((r) => child.on('close', r));
    expect(code).toBe(2);
  });
});
