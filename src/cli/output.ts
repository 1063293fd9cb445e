// ProcDump-style log lines and a progress bar for a TTY.
import { escapeControl, formatBytes } from './format.js';

/** `[HH:MM:SS - INFO]: message`, as ProcDump prints; control characters in the message are escaped. */
export function logLine(level: 'INFO' | 'WARN' | 'ERROR', message: string, when = new Date()): string {
  return `[${when.toTimeString().slice(0, 8)} - ${level}]: ${escapeControl(message)}\n`;
}

/** Redraws one line on a TTY; silent elsewhere (a log file does not want 50 updates a second). */
export function progressBar(stream: NodeJS.WriteStream): {
  update(done: number, total: number): void;
  end(): void;
} {
  if (!stream.isTTY) return { update() {}, end() {} };
  let drawn = false;
  return {
    update(done, total) {
      const width = 30;
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, ' ');
      stream.write(
        `\r[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  ${formatBytes(done)} / ${formatBytes(total)}  `,
      );
      drawn = true;
    },
    end() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
