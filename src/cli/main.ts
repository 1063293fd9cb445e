#!/usr/bin/env node
// The tripdump command line: dispatches to a command and turns errors into messages and exit codes.
import { readFileSync } from 'node:fs';
import { AbortError, TripdumpError, UsageError } from '../errors.js';
import { EXIT, stopWhenStdoutCloses } from './common.js';
import { escapeControl } from './format.js';

/** A command once its module is loaded: what runs it, and its usage text (first line shown on a usage error). */
interface Command {
  run: (argv: string[], out: NodeJS.WriteStream) => Promise<number>;
  usage: string;
}

// The command table. Each module is imported only when its command runs, so a command pays for its own
// code alone: `--version` loads none of them, `sample` no dump writer, and only `agent` loads yaml, ajv and
// prom-client. The monitor (no command name: a switch or a pid first) is the default.
const COMMANDS: Record<string, () => Promise<Command>> = {
  sample: async () => {
    const m = await import('./sample.js');
    return { run: m.sampleCommand, usage: m.SAMPLE_USAGE };
  },
  dump: async () => {
    const m = await import('./dump.js');
    return { run: m.dumpCommand, usage: m.DUMP_USAGE };
  },
  counters: async () => {
    const m = await import('./counters.js');
    return { run: m.countersCommand, usage: m.COUNTERS_USAGE };
  },
  agent: async () => {
    const m = await import('./agent.js');
    return { run: m.agentCommand, usage: m.AGENT_USAGE };
  },
  'crash-handler': async () => {
    const m = await import('./crash.js');
    return { run: m.crashHandlerCommand, usage: m.CRASH_USAGE };
  },
  watch: async () => {
    const m = await import('./watch.js');
    return { run: m.watchCommand, usage: m.WATCH_USAGE };
  },
  node: async () => {
    const m = await import('./node.js');
    return { run: m.nodeCommand, usage: m.NODE_USAGE };
  },
};

async function monitor(): Promise<Command> {
  const [m, p] = await Promise.all([import('./monitor-command.js'), import('./procdump.js')]);
  return { run: m.monitorCommand, usage: p.PROCDUMP_USAGE };
}

const USAGE = `Usage: tripdump [options] {PID | [-w] NAME | [-pgid] PGID} [DUMP_FILE | DUMP_DIR]
       tripdump <command> [options]

Monitoring (ProcDump for Linux 3.x's command line; tripdump -h lists the switches):
  tripdump -c 90 -n 3 1234    a dump each time CPU is at or above 90%, three in all
  tripdump -w -m 500 myapp    a dump of every process named myapp once its memory reaches 500 MB
  tripdump -e -n 3 1234       a .NET process's own runtime dump at each of 3 first-chance exceptions

Commands:
  dump PID [FILE|DIR]     write a core dump now (tripdump dump --help)
  sample [PID...|--all]   print what the sampler sees (tripdump sample --help)
  counters PID            print a .NET process's counters (tripdump counters --help)
  agent --config FILE     run rules on every process of the host, serve metrics (tripdump agent --help)
  crash-handler ...       capture every crash on the host (tripdump crash-handler --help)
  watch --on-crash ...    record processes and act when one crashes (tripdump watch --help)
  node snapshot|report|stack|profile PID   a Node.js process, from outside (tripdump node --help)

Options (each command refuses an option given twice):
  --help                  this text
  -h, -?                  the monitoring switches (ProcDump's -h)
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
  const named = command !== undefined && Object.hasOwn(COMMANDS, command);
  let loaded: Command | undefined;
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
    }
    loaded = await (named ? COMMANDS[command]!() : monitor());
    return await loaded.run(named ? rest : argv, process.stdout);
  } catch (e) {
    // Messages may quote what a process controls (its name) or what was typed: escaped for the terminal.
    const say = (text: string) => process.stderr.write(`tripdump: ${escapeControl(text)}\n`);
    if (e instanceof AbortError) {
      say(e.message);
      return EXIT.ok;
    }
    // Only a bad command line is a usage error; a process that goes away during the run is a runtime
    // outcome (exit 1), whatever error class says so. It comes from a command that ran, so it is loaded.
    if (e instanceof UsageError && loaded) {
      // A rules file's problems (the agent's ConfigError, not imported here: that would load its YAML and
      // schema code for every command), one line each; a line break of the file's is not in them.
      const lines: unknown = 'lines' in e ? e.lines : undefined;
      for (const line of Array.isArray(lines) ? lines.map(String) : [e.message]) say(line);
      process.stderr.write(
        `${loaded.usage.split('\n')[0]}\n(tripdump ${named ? `${command} ` : ''}-h for details)\n`,
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
