#!/usr/bin/env node
// clang-format over every C/C++ file under native/ and test/fixtures (and bench/*.c): --fix rewrites,
// otherwise fails listing the files that are not formatted.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const roots = ['native', 'test/fixtures', 'bench'];
const files = [];
const walk = (dir) => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.(cc|h|c|cpp|hpp)$/.test(e.name) && !p.includes(`${path.sep}fixtures${path.sep}data`))
      files.push(p);
  }
};
for (const r of roots) {
  try {
    walk(r);
  } catch {}
}
const fix = process.argv.includes('--fix');
const r = spawnSync('clang-format', fix ? ['-i', ...files] : ['--dry-run', '-Werror', ...files], {
  stdio: 'inherit',
});
if (r.error) {
  console.error(`clang-format could not run: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
