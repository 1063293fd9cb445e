// Whether the agent can write into a folder a rule's actions write to. A rule whose folder is missing,
// is a file or is not writable is that rule's problem: `agent check` refuses it with the place in the file,
// the running agent says it in the rule's status, its metric and the log, and refuses the rule's firings
// (counted as the rule's errors) while the folder stays unusable; the other rules and the endpoint go on.
import { accessSync, constants, statSync } from 'node:fs';

/** What is wrong with `dir` for writing dumps into it; undefined when nothing is. */
export function folderProblem(dir: string): string | undefined {
  try {
    if (!statSync(dir).isDirectory()) return `${dir} is not a folder`;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `${dir} does not exist`;
    return `${dir} cannot be used (stat: ${code ?? (e as Error).message})`;
  }
  try {
    // W_OK alone would allow a folder that cannot be entered; a read-only mount fails here too (EROFS).
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'EROFS'
      ? `${dir} is on a read-only filesystem`
      : `${dir} is not writable by the agent (uid ${process.getuid?.() ?? '?'}: ${code ?? (e as Error).message})`;
  }
  return undefined;
}
