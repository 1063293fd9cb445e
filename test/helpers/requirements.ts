// What a test needs that a machine may lack: a tool, root, a kernel feature. When it is missing, the test
// (or the one check that needs it) is skipped with a printed reason that names the package to install.
// CI sets TRIPDUMP_NO_SKIP=1: everything is installed there, so a missing requirement is an error instead
// (and test/no-skip-reporter.ts fails the run if any test was skipped).
import { spawnSync } from 'node:child_process';
import path from 'node:path';

export const strict = process.env.TRIPDUMP_NO_SKIP === '1';
export const isRoot = process.getuid?.() === 0;

/** `ok`, or prints why what needs it is skipped (throws under TRIPDUMP_NO_SKIP=1). */
export function requirement(ok: boolean, reason: string): boolean {
  if (ok) return true;
  if (strict)
    throw new Error(`a requirement is missing where nothing may skip (TRIPDUMP_NO_SKIP=1): ${reason}`);
  console.warn(`skipped: ${reason}`);
  return false;
}

/** Whether `tool` is on PATH; if not, says which Debian package provides it. */
export function hasTool(tool: string, pkg: string): boolean {
  const found = spawnSync('sh', ['-c', 'command -v "$0"', tool], { stdio: 'ignore' }).status === 0;
  return requirement(found, `${tool} is not installed (apt-get install ${pkg})`);
}

/** Whether we run as root; if not, says what needed it. */
export function needsRoot(what: string): boolean {
  return requirement(isRoot, `${what} needs root`);
}

/**
 * Whether the unprivileged user nobody can run this checkout's code, for tests that run tripdump as another
 * user: a clone below a folder only its owner may enter (root's home, `mktemp -d`) cannot be. Needs root and
 * setpriv; says why not otherwise.
 */
export function nobodyCanRun(what: string): boolean {
  if (!needsRoot(what) || !hasTool('setpriv', 'util-linux')) return false;
  const entry = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
  const readable =
    spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test', '-r', entry]).status ===
    0;
  return requirement(
    readable,
    `${what}: user nobody cannot read ${entry} (a folder above it is closed to other users); clone where others may read to run it`,
  );
}
