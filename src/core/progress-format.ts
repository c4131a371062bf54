/**
 * The pure half of the progress bar: whether to show one at all, rate smoothing, ETA text and the
 * one line the bar draws. No clock, no terminal: the adapter (src/adapters/progress-bar.ts) passes
 * the time, the width and what it read from the process.
 */
import { formatBytes } from "./units.ts";

/** A batch shorter than this never shows a bar: a small push or pull prints nothing extra. */
export const SHOW_AFTER_MS = 500;

/** What decides whether a bar may be drawn. */
export interface ProgressContext {
  /** Is stderr (where the bar goes) a terminal? */
  readonly stderrIsTTY: boolean;
  /** The log format as configured; undefined means "chosen from stdout" (pretty on a TTY). */
  readonly logFormat: "json" | "pretty" | undefined;
  /** false after `--no-progress` (or `progress: false` in the config file). */
  readonly progress: boolean;
  /** Is this process in the terminal's foreground process group? undefined when unknown. */
  readonly foreground: boolean | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * Should a bar be drawn? Only for a human watching: stderr a terminal, not asked for JSON, not
 * turned off, not a CI log or a dumb terminal, and not a job sent to the background (a daemon
 * started with `&` would draw over the shell's prompt). An unknown foreground counts as yes.
 */
export function shouldShowProgress(c: ProgressContext): boolean {
  if (!c.progress || !c.stderrIsTTY || c.logFormat === "json") return false;
  // CI=false / CI=0 are how some setups say "not CI"; any other value means a CI log.
  const ci = c.env.CI;
  if (ci !== undefined && ci !== "" && ci !== "false" && ci !== "0") return false;
  if (c.env.TERM === "dumb") return false;
  return c.foreground !== false;
}

/**
 * Is the process in its terminal's foreground process group, from the text of /proc/self/stat
 * ("pid (comm) state ppid pgrp session tty_nr tpgid ...")? undefined when it cannot tell.
 */
export function parseForeground(procStat: string): boolean | undefined {
  // comm may hold spaces and parentheses: the fields start after the last ')'.
  const close = procStat.lastIndexOf(")");
  if (close < 0) return undefined;
  // state ppid pgrp session tty_nr tpgid ...
  const fields = procStat.slice(close + 1).trim().split(/\s+/);
  if (fields.length < 6) return undefined;
  const pgrp = Number(fields[2]);
  const tpgid = Number(fields[5]);
  if (!Number.isInteger(pgrp) || !Number.isInteger(tpgid)) return undefined;
  // tpgid -1: no controlling terminal (setsid, a service writing to a tty): detached, no bar.
  return tpgid > 0 && tpgid === pgrp;
}

/** A value's rate of change, smoothed: an exponentially weighted moving average over time. */
export interface Smoothed {
  readonly atMs: number;
  readonly value: number;
  /** Units per second; undefined until two samples are apart in time. */
  readonly perSecond: number | undefined;
}

// The averaging time constant: long enough that one slow request does not swing the ETA, short
// enough that a change of pace (small files to big ones) shows within a few seconds.
const RATE_TAU_MS = 3000;

/** Start smoothing a value at a time. */
export function startRate(atMs: number, value: number): Smoothed {
  return { atMs, value, perSecond: undefined };
}

/**
 * Add a sample. The weight of the new rate grows with the time since the last sample, so the
 * result does not depend on how often the bar happens to redraw.
 */
export function sampleRate(prev: Smoothed, atMs: number, value: number): Smoothed {
  const dt = atMs - prev.atMs;
  if (dt <= 0) return prev;
  const instant = ((value - prev.value) / dt) * 1000;
  if (prev.perSecond === undefined) return { atMs, value, perSecond: instant };
  const alpha = 1 - Math.exp(-dt / RATE_TAU_MS);
  return { atMs, value, perSecond: prev.perSecond + alpha * (instant - prev.perSecond) };
}

/** "--" (unknown), "42s", "3m05s", "2h07m"; never more precise than a person can use. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 100 * 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return ">99h";
}

// One request costs about as much time as moving this many bytes, so a batch of small files (or
// server-side copies, which move none) still advances the bar and its ETA. Only the split between
// per-file and per-byte work depends on it: the smoothed rate absorbs the actual speed.
const FILE_COST_BYTES = 64 * 1024;

/** A batch's totals and how far it got. */
export interface ProgressCounts {
  readonly files: number;
  readonly bytes: number;
  readonly filesDone: number;
  readonly bytesDone: number;
  readonly failed: number;
}

/** The batch's work done and total, in byte-equivalents (see FILE_COST_BYTES). */
export function workOf(c: ProgressCounts): { done: number; total: number } {
  return { done: (c.filesDone + c.failed) * FILE_COST_BYTES + c.bytesDone, total: c.files * FILE_COST_BYTES + c.bytes };
}

/** Seconds left, from the work left and the smoothed work rate; undefined while unknown. */
export function etaSeconds(c: ProgressCounts, workPerSecond: number | undefined): number | undefined {
  if (workPerSecond === undefined || workPerSecond <= 0) return undefined;
  const { done, total } = workOf(c);
  return Math.max(0, total - done) / workPerSecond;
}

/** What one frame of the bar shows. */
export interface ProgressFrame extends ProgressCounts {
  readonly role: string;
  /** Smoothed bytes per second; undefined while unknown. */
  readonly bytesPerSecond: number | undefined;
  readonly etaSeconds: number | undefined;
}

const BAR_MIN = 10;
const BAR_MAX = 30;

/**
 * The bar's line, fitted to `width` columns: the graphic shrinks first, then goes; the text is cut
 * only on a very narrow terminal (a wrapped line would break the redraw, which rewrites one line).
 * `push [██████░░░░░░]  42%  126/300 files  1.9 MiB/4.6 MiB  3.1 MiB/s  ETA 2s`
 */
export function formatProgressLine(f: ProgressFrame, width: number): string {
  const { done, total } = workOf(f);
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
  const rate = f.bytesPerSecond === undefined ? "--/s" : `${formatBytes(Math.max(0, Math.round(f.bytesPerSecond)))}/s`;
  const parts = [
    pct,
    `${f.filesDone}/${f.files} files`,
    `${formatBytes(f.bytesDone)}/${formatBytes(f.bytes)}`,
    rate,
    `ETA ${formatEta(f.etaSeconds)}`,
    ...(f.failed > 0 ? [`${f.failed} failed`] : []),
  ];
  const text = parts.join("  ");
  // "role [bar] text": the role, a space, brackets and a space around the bar.
  const room = width - f.role.length - text.length - 4;
  if (room < BAR_MIN) return `${f.role} ${text}`.slice(0, Math.max(0, width));
  const size = Math.min(BAR_MAX, room);
  const full = Math.round(fraction * size);
  return `${f.role} [${"█".repeat(full)}${"░".repeat(size - full)}] ${text}`;
}

/**
 * `--stats`: one log line of a batch's progress, for logs that no bar reaches (the journal, cron):
 * `progress: push 126/300 files, 1.9 MiB of 4.6 MiB, 3.1 MiB/s, ETA 2s`.
 */
export function formatStatsLine(f: ProgressFrame): string {
  const rate = f.bytesPerSecond === undefined ? "--/s" : `${formatBytes(Math.max(0, Math.round(f.bytesPerSecond)))}/s`;
  return `progress: ${f.role} ${f.filesDone}/${f.files} files, ${formatBytes(f.bytesDone)} of ${formatBytes(f.bytes)}, ${rate}, ETA ${formatEta(f.etaSeconds)}${f.failed > 0 ? `, ${f.failed} failed` : ""}`;
}
