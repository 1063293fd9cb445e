#!/usr/bin/env node
// Builds the native files (addon, crash handler, libtripdump.so) from source with node-gyp into
// build/Release.
//
// As the package's install script it runs with --prefer-prebuilt: when the package ships prebuilt
// binaries that fit this machine (prebuilds/<platform>-<arch>, chosen by node-gyp-build as the loader
// will choose them), they are loaded in a child process to prove it and nothing is compiled — no compiler
// is needed. Only when none fits (another architecture, musl, a glibc older than the prebuilds need), or
// with `npm install --build-from-source`, does it compile.
//
// Node's headers: this machine (and CI) cannot download them, so when the running node ships its own
// (/usr/include/node for Debian/NodeSource builds) node-gyp is pointed there instead of the network.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const require = createRequire(import.meta.url);

/** The prebuilt folder that fits, or why none does. */
function prebuilt() {
  if (/^(1|true)$/.test(process.env.npm_config_build_from_source ?? ''))
    return { why: 'asked to build from source' };
  // The same choice the loader makes (node-gyp-build), restricted to prebuilds, in a child process: a
  // binary that needs a newer glibc fails to load there, not here.
  const probe = `
    const path = require('node:path');
    const file = require('node-gyp-build').path(process.argv[1]);
    require(file);
    const handler = path.join(path.dirname(file), 'tripdump-crash-handler');
    const r = require('node:child_process').spawnSync(handler, ['--version'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(handler + ' does not run: ' + (r.error?.message ?? r.stderr));
    process.stdout.write(path.dirname(file));`;
  const r = spawnSync(process.execPath, ['-e', probe, root], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, PREBUILDS_ONLY: '1' },
  });
  if (r.status === 0) return { dir: r.stdout };
  const lines = (r.stderr || '').split('\n').filter((l) => /Error|error:/.test(l));
  return { why: lines[0]?.trim() ?? `exit ${r.status}` };
}

if (process.argv.includes('--prefer-prebuilt')) {
  const p = prebuilt();
  if (p.dir) {
    console.log(
      `tripdump: using the prebuilt binaries in ${path.relative(root, p.dir)} (nothing to compile)`,
    );
    process.exit(0);
  }
  console.log(`tripdump: building from source (${p.why})`);
}

const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const args = [gyp, 'rebuild', '--release'];
const nodedir = process.env.npm_config_nodedir || path.resolve(process.execPath, '..', '..');
if (existsSync(path.join(nodedir, 'include', 'node', 'common.gypi'))) args.push(`--nodedir=${nodedir}`);
const jobs = process.env.JOBS || 'max';
args.push(`--jobs=${jobs}`);
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
