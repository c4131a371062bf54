/** pino logger construction: JSON on stdout by default, pretty on a TTY or when asked. */
import { createRequire } from "node:module";
import pino, { type Logger } from "pino";
import type PinoPretty from "pino-pretty";

export type { Logger } from "pino";

const require = createRequire(import.meta.url);

/** A line drawn on the terminal between log lines (the progress bar), which a log line must not run into. */
export interface TransientLine {
  /** Erase it, before a log line is written. */
  clear(): void;
  /** Draw it again, after. */
  redraw(): void;
}

// The terminal is one per process, and so is what is drawn on it: the bar registers here while
// it is visible, and the pretty writer prints around it (as cli-progress's MultiBar.log does).
let transient: TransientLine | undefined;

/** Register the line pretty log lines are printed around while it is visible (undefined: none). */
export function setTransientLine(line: TransientLine | undefined): void {
  transient = line;
}

/** Create the process logger. Sync writes so nothing is lost when the entry file exits. */
export function createLogger(opts: { level: string; format: "json" | "pretty" | undefined; name?: string }): Logger {
  const format = opts.format ?? (process.stdout.isTTY ? "pretty" : "json");
  const base = { level: opts.level, name: opts.name ?? "fansync", base: { pid: process.pid } };
  if (format === "pretty") {
    // Formatted on this thread rather than in a pino transport's worker, so each line is written at
    // a known moment: the progress bar is erased just before it and redrawn just after, where a
    // worker's write would land in the middle of the bar. Loaded only here: JSON runs (cron) skip it.
    const { prettyFactory } = require("pino-pretty") as typeof PinoPretty;
    const pretty = prettyFactory({ ignore: "pid,hostname,name" });
    const out = pino.destination({ fd: 1, sync: true });
    return pino(base, {
      write(line: string) {
        transient?.clear();
        out.write(pretty(line));
        transient?.redraw();
      },
    });
  }
  return pino(base, pino.destination({ fd: 1, sync: true }));
}

/** A logger that discards everything (library use and tests). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
