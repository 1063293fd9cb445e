#!/usr/bin/env node
// The tripdump command line: dispatches to a command and turns errors into messages and exit codes.
import { readFileSync } from 'node:fs';
import { AbortError, TripdumpError, UsageError } from '../errors.js';
import { AGENT_USAGE, agentCommand } from './agent.js';
import { EXIT, stopWhenStdoutCloses } from './common.js';
import { COUNTERS_USAGE, countersCommand } from './counters.js';
import { CRASH_USAGE, crashHandlerCommand } from './crash.js';
import { DUMP_USAGE, dumpCommand } from './dump.js';
import { escapeControl } from './format.js';
import { monitorCommand } from './monitor-command.js';
import { NODE_USAGE, nodeCommand } from './node.js';
import { PROCDUMP_USAGE } from './procdump.js';
import { SAMPLE_USAGE, sampleCommand } from './sample.js';
import { WATCH_USAGE, watchCommand } from './watch.js';

const USAGE = `Usage: tripdump [options] {PID | [-w] NAME | [-pgid] PGID} [DUMP_FILE | DUMP_DIR]
       tripdump <command> [options]

Monitoring (ProcDump for Linux 3.x's command line; tripdump -h lists the switches):
  tripdump -c 90 -n 3 1234    a dump each time CPU is at or above 90%, three in all
  tripdump -w -m 500 myapp    a dump of every process named myapp once its memory reaches 500 MB

Commands:
  dump PID [FILE|DIR]     write a core dump now (tripdump dump --help)
  sample [PID...|--all]   print what the sampler sees (tripdump sample --help)
  counters PID            print a .NET process's counters (tripdump counters --help)
  agent --config FILE     run rules on every process of the host, serve metrics (tripdump agent --help)
  crash-handler ...       capture every crash on the host (tripdump crash-handler --help)
  watch --on-crash ...    record processes and act when one crashes (tripdump watch --help)
  node snapshot|report|stack|profile PID   a Node.js process, from outside (tripdump node --help)

Options (each command refuses an option given twice):
  -h, --help              this text
  -v, --version           the version
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  stopWhenStdoutCloses();
  try {
    switch (command) {
      case undefined:
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
      case 'dump':
        return await dumpCommand(rest, process.stdout);
      case 'counters':
        return await countersCommand(rest, process.stdout);
      case 'agent':
        return await agentCommand(rest, process.stdout);
      case 'crash-handler':
        return await crashHandlerCommand(rest, process.stdout);
      case 'watch':
        return await watchCommand(rest, process.stdout);
      case 'node':
        return await nodeCommand(rest, process.stdout);
      default:
        return await monitorCommand(argv, process.stdout);
    }
  } catch (e) {
    // Messages may quote what a process controls (its name) or what was typed: escaped for the terminal.
    const say = (text: string) => process.stderr.write(`tripdump: ${escapeControl(text)}\n`);
    if (e instanceof AbortError) {
      say(e.message);
      return EXIT.ok;
    }
    // Only a bad command line is a usage error; a process that goes away during the run is a runtime
    // outcome (exit 1), whatever error class says so.
    if (e instanceof UsageError) {
      const usage =
        {
          sample: SAMPLE_USAGE,
          dump: DUMP_USAGE,
          counters: COUNTERS_USAGE,
          agent: AGENT_USAGE,
          'crash-handler': CRASH_USAGE,
          watch: WATCH_USAGE,
          node: NODE_USAGE,
        }[command as string] ?? PROCDUMP_USAGE;
      say(e.message);
      process.stderr.write(
        `${usage.split('\n')[0]}\n(tripdump ${['sample', 'dump', 'counters', 'crash-handler', 'watch', 'node', 'agent'].includes(command as string) ? `${command} ` : ''}-h for details)\n`,
      );
      return EXIT.usage;
    }
    // Node's own system errors (fs) say what failed in their message; anything else is a bug: its stack.
    if (e instanceof TripdumpError || typeof (e as NodeJS.ErrnoException).syscall === 'string')
      say((e as Error).message);
    else process.stderr.write(`tripdump: ${(e as Error).stack}\n`);
    return EXIT.failure;
  }
}

// Exit as soon as the command is done, not when Node has torn everything down: what a command writes is
// already out (stdout and stderr are synchronous on Linux for files, pipes and terminals), and what is left
// (a closing socket, a timer, the environment's clean-up) would only delay the exit, most of all on a loaded
// host: Ctrl-C is answered by the exit (issue 19).
main(process.argv.slice(2)).then((code) => process.exit(code));
