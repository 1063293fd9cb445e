#!/usr/bin/env node
// Builds the addon with node-gyp. This machine (and CI) cannot download Node's headers, so when the
// running node ships its own headers next to it (/usr/include/node for Debian/NodeSource builds) we
// point node-gyp there instead of letting it try the network.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const args = [gyp, 'rebuild', '--release'];
const nodedir = process.env.npm_config_nodedir || path.resolve(process.execPath, '..', '..');
if (existsSync(path.join(nodedir, 'include', 'node', 'common.gypi'))) args.push(`--nodedir=${nodedir}`);
const jobs = process.env.JOBS || 'max';
args.push(`--jobs=${jobs}`);
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
