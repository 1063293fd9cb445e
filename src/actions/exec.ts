// Runs a command when a trigger fires: argv, no shell, a timeout, and {pid} {path} {trigger} tokens.
import { spawn } from 'node:child_process';
import { UsageError } from '../errors.js';
import type { Action, ActionContext, ActionResult } from './action.js';

export class ExecAction implements Action {
  readonly kind = 'exec';
  constructor(
    readonly argv: readonly string[],
    readonly timeoutMs = 60_000,
  ) {
    if (argv.length === 0 || !argv[0]) throw new UsageError('exec action needs a command', 'exec');
  }

  run(ctx: ActionContext): Promise<ActionResult> {
    const tokens: Record<string, string> = {
      pid: String(ctx.target.pid),
      path: ctx.written.get('dump') ?? ctx.written.get('history') ?? '',
      trigger: ctx.firing.tag,
      name: ctx.target.name,
    };
    const args = this.argv.map((a) =>
      a.replace(/\{(pid|path|trigger|name)\}/g, (_, k: string) => tokens[k]!),
    );
    return new Promise((resolve, reject) => {
      const child = spawn(args[0]!, args.slice(1), {
        stdio: ['ignore', 'inherit', 'inherit'],
        signal: ctx.signal,
        killSignal: 'SIGKILL',
      });
      // A timer of our own, not spawn's `timeout`: Node keeps that one running when the command cannot be
      // started (ENOENT), which held a stopping agent for the whole timeout.
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        const how = sig ? `killed by ${sig}` : `exited with ${code}`;
        if (code === 0) resolve({ message: `Command ${args[0]} ${how}` });
        else reject(new Error(`command ${args.join(' ')} ${how}`));
      });
    });
  }
}
