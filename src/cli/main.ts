#!/usr/bin/env node
// The tripdump command line: dispatches to a command and turns errors into messages and exit codes.
import { readFileSync } from 'node:fs';
import { ProcessGoneError, TripdumpError, UsageError } from '../errors.js';
import { EXIT } from './common.js';
import { SAMPLE_USAGE, sampleCommand } from './sample.js';

const USAGE = `Usage: tripdump <command> [options]

Commands:
  sample [PID...|--all]   print what the sampler sees (tripdump sample --help)

Options:
  -h, --help              this text
  -v, --version           the version
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return command === undefined ? EXIT.usage : EXIT.ok;
      case '-v':
      case '--version':
        process.stdout.write(`tripdump ${version()}\n`);
        return EXIT.ok;
      case 'sample':
        return await sampleCommand(rest, process.stdout);
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof ProcessGoneError) {
      const hint = command === 'sample' ? SAMPLE_USAGE.split('\n')[0] : "run 'tripdump --help' for usage";
      process.stderr.write(`tripdump: ${e.message}\n${hint}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`tripdump: ${e instanceof TripdumpError ? e.message : (e as Error).stack}\n`);
    return EXIT.failure;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
