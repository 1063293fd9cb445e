// With TRIPDUMP_NO_SKIP=1 (CI: root, every tool installed) a skipped test is a failure: this reporter
// lists them at the end of the run and makes the run fail.
import type { Reporter, TestModule } from 'vitest/node';

export default class NoSkipReporter implements Reporter {
  onTestRunEnd(modules: readonly TestModule[]): void {
    const skipped: string[] = [];
    for (const m of modules)
      for (const t of m.children.allTests())
        if (t.result().state === 'skipped')
          skipped.push(`${m.moduleId.split('/test/').pop()} › ${t.fullName}`);
    if (skipped.length === 0) return;
    process.stderr.write(
      `\n${skipped.length} test(s) skipped where nothing may skip (TRIPDUMP_NO_SKIP=1):\n${skipped.map((s) => `  ${s}\n`).join('')}`,
    );
    process.exitCode = 1;
  }
}
