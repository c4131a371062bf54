/** pino logger construction: JSON on stdout by default, pretty on a TTY or when asked. */
import { fstatSync } from "node:fs";
import { createRequire } from "node:module";
import pino, { type Logger } from "pino";
import type PinoPretty from "pino-pretty";
import { FansyncError } from "../core/errors.ts";
import { formatBytes } from "../core/units.ts";

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

/** Whether logs are pretty: asked for, or by default on a terminal (a --log-file is JSON unless asked). */
export function isPretty(format: "json" | "pretty" | undefined, file?: string): boolean {
  return (format ?? (file === undefined && process.stdout.isTTY ? "pretty" : "json")) === "pretty";
}

// Byte counts in pretty lines, as the progress bar shows them; JSON keeps them exact.
const BYTE_FIELDS = ["bytes", "uploadBytes", "downloadBytes", "transferBytes"];

// The --log-file destination, reopened on SIGHUP (logrotate's postrotate).
let logFile: ReturnType<typeof pino.destination> | undefined;

/** Reopen the --log-file at its path (after logrotate moved it); false when logs go to stdout. */
export function reopenLogFile(): boolean {
  if (!logFile) return false;
  logFile.reopen();
  return true;
}

/**
 * Whether stdout is the systemd journal: JOURNAL_STREAM (`journalStream`, as the CLI read it) names
 * its device and inode (systemd sets it for a unit whose stdout is the journal, and a child that
 * redirected stdout no longer matches).
 */
export function stdoutIsJournal(journalStream: string | undefined): boolean {
  if (!journalStream) return false;
  try {
    const st = fstatSync(1);
    return journalStream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** Whether stdout and stderr are one stream (cron's `2>&1 | logger`, a unit's journal): an error is then written once. */
export function stdoutIsStderr(): boolean {
  try {
    const [o, e] = [fstatSync(1), fstatSync(2)];
    return o.dev === e.dev && o.ino === e.ino && !o.isCharacterDevice();
  } catch {
    return false;
  }
}

// pino's levels as syslog priorities (sd-daemon(3) prefixes): fatal crit, error err, warn warning,
// info info, debug and trace debug. journald strips the prefix and files the line at that priority.
const PRIORITY: Record<string, number> = { "60": 2, "50": 3, "40": 4, "30": 6, "20": 7, "10": 7 };

/**
 * The fields of a log line about `err`, the same wherever an error is logged: `err` (written as its
 * type, message and code, see {@link errorRecord}) and, when fansync's error says what to do, `hint`.
 * Spread into the line's fields: `log.warn({ path, ...errorFields(err) }, "could not delete")`.
 */
export function errorFields(err: unknown): { err: unknown; hint?: string } {
  const hint = err instanceof FansyncError ? err.hint : undefined;
  return { err, ...(hint ? { hint } : {}) };
}

/**
 * What a log line's `err` holds: the error's type (an SDK error's S3 code when its name says only
 * "Error"), message and code. An error in a log line is that: a stack trace names source paths (a
 * release's build directory) and says nothing an operator can act on; `withStack` (-v) keeps it.
 */
export function errorRecord(e: unknown, withStack = false): { type: string; message: string; code?: string | number; stack?: string } {
  if (!(e instanceof Error)) {
    // Something thrown that is not an Error (a string, an SDK's plain object): its name and words.
    const o = (e ?? {}) as { name?: unknown; message?: unknown };
    return typeof o.message === "string" ? { type: typeof o.name === "string" ? o.name : "Error", message: o.message } : { type: typeof e === "string" ? "Error" : typeof e, message: String(e) };
  }
  const code = (e as NodeJS.ErrnoException).code;
  const type = e.name === "Error" && typeof code === "string" && code !== "" ? code : e.name;
  return { type, message: e.message || e.name, ...(code !== undefined ? { code } : {}), ...(withStack && e.stack ? { stack: e.stack } : {}) };
}

/** Create the process logger. Sync writes so nothing is lost when the entry file exits. */
export function createLogger(opts: { level: string; format: "json" | "pretty" | undefined; file?: string | undefined; name?: string; journalStream?: string | undefined }): Logger {
  // Every `err` field (errorFields) is written by errorRecord; -v (debug) keeps the stack.
  const withStack = opts.level === "debug" || opts.level === "trace";
  const err = (e: unknown) => errorRecord(e, withStack);
  const base = { level: opts.level, name: opts.name ?? "fansync", base: { pid: process.pid }, serializers: { err } };
  const out = opts.file ? pino.destination({ dest: opts.file, append: true, sync: true, mkdir: true }) : pino.destination({ fd: 1, sync: true });
  logFile = opts.file ? out : undefined;
  if (isPretty(opts.format, opts.file)) {
    // Formatted on this thread rather than in a pino transport's worker, so each line is written at
    // a known moment: the progress bar is erased just before it and redrawn just after, where a
    // worker's write would land in the middle of the bar. Loaded only here: JSON runs (cron) skip it.
    const { prettyFactory } = require("pino-pretty") as typeof PinoPretty;
    const human = (v: unknown) => (typeof v === "number" ? formatBytes(v) : String(v));
    // One line per event: the fields follow the message on the same line.
    const pretty = prettyFactory({ ignore: "pid,hostname,name", singleLine: true, colorize: !opts.file && process.stdout.isTTY === true, customPrettifiers: Object.fromEntries(BYTE_FIELDS.map((k) => [k, human])) });
    return pino(base, {
      write(line: string) {
        transient?.clear();
        out.write(pretty(line));
        transient?.redraw();
      },
    });
  }
  if (!opts.file && stdoutIsJournal(opts.journalStream)) {
    // Under systemd, so `journalctl -p err` shows errors: each JSON line gets its priority prefix.
    return pino(base, {
      write(line: string) {
        out.write(`<${PRIORITY[/^\{"level":(\d+)/.exec(line)?.[1] ?? "30"] ?? 6}>${line}`);
      },
    });
  }
  return pino(base, out);
}

/** A logger that discards everything (library use and tests). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
