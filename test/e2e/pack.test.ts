// The package as a user gets it: `npm pack` (with the prepack step that builds the linux-x64 and
// linux-arm64 prebuilds), the tarball installed into an empty folder on a PATH without any compiler or
// make, then the CLI run from there: a sample of every process, a core of a spawned target, the crash
// handler executable, libtripdump.so under the C test. The arm64 files are run under qemu-user with
// Debian's arm64 node: they load, sample, and say dumps are not supported there yet.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, spawnTarget, trackProcesses } from '../helpers/processes.js';
import { hasTool, requirement } from '../helpers/requirements.js';

const root = path.resolve(import.meta.dirname, '..', '..');
const track = trackProcesses();
const canPack = hasTool('aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu');
// Outside build/, which every build from source (node-gyp rebuild) empties.
const arm64Root =
  process.env.TRIPDUMP_ARM64_NODE ?? path.join(os.homedir(), '.cache', 'tripdump', 'arm64-node');
const canQemu =
  canPack &&
  hasTool('qemu-aarch64', 'qemu-user') &&
  requirement(
    existsSync(path.join(arm64Root, 'usr', 'bin', 'node')),
    `no arm64 node in ${arm64Root} (bash .ci/arm64-node: Debian's nodejs:arm64 through apt-get download)`,
  );

let work = '';
let consumer = '';
let bin = '';
let installLog = '';

/**
 * Runs a command to its end without blocking this worker's event loop (vitest's own messages must get
 * through during minutes of compiling).
 */
function exec(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? root, env: opts.env ?? process.env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Runs in the consumer folder with PATH = `bin` only: node, npm, npx and sh, and no compiler. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  return exec(cmd, args, { cwd: consumer, env: { ...process.env, PATH: bin, ...opts.env } });
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await exec(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.out}${r.err}`);
}

describe.skipIf(!canPack)('npm pack, then install with no compiler', () => {
  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'tripdump-pack-'));
    // prepack's work done here and the tarball packed without scripts: `npm pack` would also run prepare
    // (tsc into dist/), rewriting files other test files are executing right now.
    try {
      // Two compiles (x64, arm64) at nice 19, so the other test files running meanwhile keep their timing.
      await must('nice', ['-n', '19', 'npm', 'run', 'prepack']);
      await must('npm', ['pack', '--ignore-scripts', '--pack-destination', work]);
    } finally {
      // Even after a failed prebuild: a prebuilds/ folder left in a checkout would be used by its next
      // `npm install` instead of a build from source.
      await must('npm', ['run', 'postpack']);
    }
    bin = path.join(work, 'bin');
    mkdirSync(bin);
    for (const tool of ['node', 'npm', 'npx', 'sh'])
      symlinkSync(
        realpathSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim()),
        path.join(bin, tool),
      );
    consumer = path.join(work, 'app');
    mkdirSync(consumer);
    writeFileSync(path.join(consumer, 'package.json'), '{ "name": "app", "private": true }\n');
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
    const r = await run('npm', [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--foreground-scripts',
      path.join(work, tarball),
    ]);
    installLog = r.out + r.err;
    expect(r.code, installLog).toBe(0);
  }, 1_800_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const pkg = () => path.join(consumer, 'node_modules', 'tripdump');

  it('installs from the prebuilds: no compiler on PATH, nothing compiled', async () => {
    for (const tool of ['cc', 'gcc', 'g++', 'c++', 'make', 'clang'])
      expect((await run('sh', ['-c', `command -v ${tool}`])).code, `${tool} on PATH`).not.toBe(0);
    expect(installLog).toContain(`tripdump: using the prebuilt binaries in prebuilds/linux-${process.arch}`);
    expect(existsSync(path.join(pkg(), 'build'))).toBe(false);
    for (const arch of ['x64', 'arm64'])
      expect(readdirSync(path.join(pkg(), 'prebuilds', `linux-${arch}`)).sort()).toEqual([
        'libtripdump.so',
        'tripdump-crash-handler',
        'tripdump.napi.glibc.node',
      ]);
    expect(existsSync(path.join(pkg(), 'native', 'lib', 'tripdump.h'))).toBe(true);
    expect(existsSync(path.join(pkg(), 'native', 'lib', 'procdump', 'ProcDumpLib.h'))).toBe(true);
  });

  it('npx tripdump sample --all --count 1 sees this process', async () => {
    const r = await run('npx', ['tripdump', 'sample', '--all', '--count', '1', '--interval', '200']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^\s*PID\s+PPID/m);
    expect(r.out).toMatch(new RegExp(`^\\s*${process.pid}\\s`, 'm'));
  });

  it('npx tripdump dump writes a core of a spawned target that gdb reads', async () => {
    const target = track(await spawnTarget('dump_target', [], { stdin: true }));
    const core = path.join(work, 'target.core');
    const r = await run('npx', ['tripdump', 'dump', String(target.pid), core]);
    expect(r.code, r.err).toBe(0);
    const head = readFileSync(core).subarray(0, 18);
    expect(head.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(head.readUInt16LE(16)).toBe(4); // ET_CORE
    if (hasTool('gdb', 'gdb')) {
      const bt = execFileSync('gdb', ['-batch', '-ex', 'thread apply all bt', fixture('dump_target'), core], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      expect(bt).toMatch(/Thread 4/);
    }
  });

  it('the crash handler executable is there, static, and runs', async () => {
    const handler = path.join(pkg(), 'prebuilds', `linux-${process.arch}`, 'tripdump-crash-handler');
    const r = spawnSync(handler, ['--version'], { encoding: 'utf8', env: {} });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^tripdump-crash-handler \d+ \(protocol \d+\)/);
    // The CLI finds it beside the addon it loaded.
    const s = await run('npx', ['tripdump', 'crash-handler', 'status', '--json']);
    expect(s.code, s.err).toBe(0);
    expect(JSON.parse(s.out)).toHaveProperty('corePattern');
  });

  it("libtripdump.so from the package passes the C tests (its own API and ProcDump's)", async () => {
    const libdir = path.join(pkg(), 'prebuilds', `linux-${process.arch}`);
    const out = path.join(work, 'lib-test');
    const r = await exec('make', [
      '-s',
      '-C',
      path.join(root, 'native', 'lib', 'test'),
      'run',
      `LIBDIR=${libdir}`,
      `OUT=${out}`,
    ]);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out.match(/^[1-9]\d* passed, 0 failed$/gm), r.out).toHaveLength(2);
  });

  it.skipIf(!canQemu)(
    'linux-arm64 under qemu-user: the addon loads in arm64 node, samples, and dumps say not supported',
    async () => {
      const qemu = (args: string[]) =>
        run('qemu-aarch64', ['-L', arm64Root, path.join(arm64Root, 'usr', 'bin', 'node'), ...args], {
          env: { PATH: `${bin}:${process.env.PATH}` },
        });
      const target = track(await spawnTarget('dump_target', [], { stdin: true }));
      const cli = path.join(pkg(), 'dist', 'cli', 'main.js');
      const where = await qemu(['-p', 'process.arch']);
      expect(where.out.trim()).toBe('arm64');
      const s = await qemu([cli, 'sample', String(target.pid), '--count', '1', '--interval', '200']);
      expect(s.code, s.err).toBe(0);
      expect(s.out).toMatch(new RegExp(`^\\s*${target.pid}\\s.*dump_target`, 'm'));
      const core = path.join(work, 'arm64.core');
      const d = await qemu([cli, 'dump', String(target.pid), core]);
      expect(d.code).toBe(1);
      expect(d.err).toMatch(/core dumps are not supported on aarch64 yet/);
      expect(existsSync(core)).toBe(false);
      const h = await run(
        'qemu-aarch64',
        [path.join(pkg(), 'prebuilds', 'linux-arm64', 'tripdump-crash-handler'), '--version'],
        {
          env: { PATH: `${bin}:${process.env.PATH}` },
        },
      );
      expect(h.code).toBe(0);
      expect(h.out).toMatch(/^tripdump-crash-handler /);
    },
  );
});
