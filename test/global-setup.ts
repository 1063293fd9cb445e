// vitest globalSetup: compiles every C target program under test/fixtures into build/fixtures/<name>,
// once per run and only when the source is newer than the binary. Tests find the binaries through
// fixture() in test/helpers/processes.ts.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { buildDotnetFixture, hasDotnet, installDotnetTool } from './fixtures/dotnet/build.js';

const root = path.resolve(import.meta.dirname, '..');
const sourceDir = path.join(root, 'test', 'fixtures');
const outDir = path.join(root, 'build', 'fixtures');

function mtime(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

function compile(source: string, output: string): Promise<void> {
  // Built under a private name and renamed: another vitest run compiling at the same moment must never
  // see (or exec) a half-written binary.
  const tmp = `${output}.${process.pid}.tmp`;
  return new Promise((resolve, reject) => {
    const cc = spawn('cc', ['-O1', '-g', '-pthread', '-o', tmp, source], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    cc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    cc.on('error', (e) => reject(new Error(`cannot run cc for ${source}: ${e.message}`)));
    cc.on('close', (code) => {
      if (code === 0) {
        renameSync(tmp, output);
        resolve();
      } else {
        rmSync(tmp, { force: true });
        reject(new Error(`cc failed for ${path.relative(root, source)} (exit ${code}):\n${stderr}`));
      }
    });
  });
}

export default async function setup(): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const jobs: Promise<void>[] = [];
  for (const file of readdirSync(sourceDir)) {
    if (!file.endsWith('.c')) continue;
    const source = path.join(sourceDir, file);
    const output = path.join(outDir, file.slice(0, -2));
    const built = mtime(output);
    if (built !== undefined && built > (mtime(source) ?? 0)) continue;
    jobs.push(compile(source, output));
  }
  // The .NET target and the tools that check its dumps, when the machine has dotnet (tests skip otherwise).
  if (hasDotnet())
    jobs.push(
      buildDotnetFixture().then(() => {}),
      installDotnetTool('dotnet-dump'),
      installDotnetTool('dotnet-counters'),
    );
  await Promise.all(jobs);
}
