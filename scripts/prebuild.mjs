#!/usr/bin/env node
// Builds the prebuilt binaries shipped in the npm package (run by `prepack`): for linux-x64 and
// linux-arm64, the Node-API addon (one binary for every Node version with Node-API 8, loaded by
// node-gyp-build), the crash handler executable and libtripdump.so, into prebuilds/linux-<arch>/.
//
// The architecture that is not this machine's is cross-compiled with Debian's g++-<triple> packages. Each
// architecture builds in its own folder (build/prebuild/linux-<arch>, incremental) so the development
// build in build/ is left alone. TRIPDUMP_PREBUILD=1 makes binding.gyp link libstdc++/libgcc statically
// and the handler fully statically: the binaries then need only glibc (2.34 or later, see README).
//
//   node scripts/prebuild.mjs [--arch x64|arm64]...   build (default: both)
//   node scripts/prebuild.mjs --clean                 remove prebuilds/ (postpack)
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const out = path.join(root, 'prebuilds');
if (process.argv.includes('--clean')) {
  rmSync(out, { recursive: true, force: true });
  process.exit(0);
}

// e_machine of each architecture's ELF files, to check what came out.
const TARGETS = {
  x64: { triple: 'x86_64-linux-gnu', debian: 'g++-x86-64-linux-gnu', machine: 62 },
  arm64: { triple: 'aarch64-linux-gnu', debian: 'g++-aarch64-linux-gnu', machine: 183 },
};
const FILES = [
  // [built name, shipped name]: node-gyp-build picks the addon by its tags (napi: any Node-API version
  // this addon asks for; glibc: not for musl, where it would not load).
  ['tripdump.node', 'tripdump.napi.glibc.node'],
  ['tripdump-crash-handler', 'tripdump-crash-handler'],
  ['libtripdump.so', 'libtripdump.so'],
];

const argArch = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--arch' ? [a] : []));
const arches = argArch.length ? argArch : Object.keys(TARGETS);
const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const nodedir = process.env.npm_config_nodedir || path.resolve(process.execPath, '..', '..');
const haveHeaders = existsSync(path.join(nodedir, 'include', 'node', 'common.gypi'));

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    console.error(`prebuild: ${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`);
    process.exit(1);
  }
}

function elfMachine(file) {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(20);
    readSync(fd, b, 0, 20, 0);
    return b.toString('latin1', 0, 4) === '\x7fELF' ? b.readUInt16LE(18) : -1;
  } finally {
    closeSync(fd);
  }
}

function mtime(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

for (const arch of arches) {
  const target = TARGETS[arch];
  if (!target) {
    console.error(`prebuild: unknown architecture '${arch}' (x64 or arm64)`);
    process.exit(2);
  }
  const env = { ...process.env, TRIPDUMP_PREBUILD: '1' };
  if (arch !== process.arch) {
    const prefix = `${target.triple}-`;
    if (spawnSync('sh', ['-c', `command -v ${prefix}g++`]).status !== 0) {
      console.error(
        `prebuild: cross-compiling for ${arch} needs ${prefix}g++ (apt-get install ${target.debian})`,
      );
      process.exit(1);
    }
    Object.assign(env, {
      CC: `${prefix}gcc`,
      CXX: `${prefix}g++`,
      LINK: `${prefix}g++`,
      AR: `${prefix}ar`,
      // node-gyp's host tools (none here) keep the machine's own compilers.
      CC_host: 'cc',
      CXX_host: 'c++',
    });
  }
  const stage = path.join(root, 'build', 'prebuild', `linux-${arch}`);
  mkdirSync(stage, { recursive: true });
  // Copied only when it changed: the generated Makefile re-runs gyp whenever binding.gyp is newer.
  const gypFile = path.join(stage, 'binding.gyp');
  const gypText = readFileSync(path.join(root, 'binding.gyp'));
  if (!existsSync(gypFile) || !readFileSync(gypFile).equals(gypText)) writeFileSync(gypFile, gypText);
  if (!existsSync(path.join(stage, 'native')))
    symlinkSync(path.join(root, 'native'), path.join(stage, 'native'));
  const gypArgs = [`--arch=${arch}`, '--release', ...(haveHeaders ? [`--nodedir=${nodedir}`] : [])];
  const makefile = path.join(stage, 'build', 'Makefile');
  // Configure once, and again when binding.gyp changed; make rebuilds what the sources changed.
  if (mtime(makefile) < mtime(gypFile))
    run(process.execPath, [gyp, 'configure', ...gypArgs], { cwd: stage, env });
  run(process.execPath, [gyp, 'build', ...gypArgs, `--jobs=${process.env.JOBS || 'max'}`], {
    cwd: stage,
    env,
  });
  const dest = path.join(out, `linux-${arch}`);
  mkdirSync(dest, { recursive: true });
  for (const [built, shipped] of FILES) {
    const from = path.join(stage, 'build', 'Release', built);
    const machine = elfMachine(from);
    if (machine !== target.machine) {
      console.error(`prebuild: ${from} is for ELF machine ${machine}, not ${arch} (${target.machine})`);
      process.exit(1);
    }
    copyFileSync(from, path.join(dest, shipped));
  }
  console.log(`prebuild: linux-${arch}: ${FILES.map(([, f]) => f).join(', ')}`);
}
