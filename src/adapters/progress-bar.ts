/**
 * The progress bar on a terminal: a {@link TransferEvents} observer drawing one cli-progress bar on
 * stderr per batch that runs longer than SHOW_AFTER_MS, cleared when the batch ends. What it shows
 * and whether it may be shown at all is decided in src/core/progress-format.ts.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { clearLine, cursorTo } from "node:readline";
import type CliProgress from "cli-progress";
import type { Config } from "../core/config.ts";
import {
  etaSeconds, formatProgressLine, parseForeground, type ProgressCounts, sampleRate, SHOW_AFTER_MS, shouldShowProgress, type Smoothed, startRate, workOf,
} from "../core/progress-format.ts";
import type { Role, TransferEvents } from "../core/transfer-events.ts";
import { setTransientLine } from "./logger.ts";

const require = createRequire(import.meta.url);

/** The terminal the bar draws on (process.stderr). */
export interface BarStream extends NodeJS.WritableStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** The progress bar for a command, or undefined when nobody is watching (see shouldShowProgress); `env`: the process environment, as the CLI hands it over. */
export function progressBarFor(cfg: Pick<Config, "logFormat" | "progress">, env: Readonly<Record<string, string | undefined>>, stream: BarStream = process.stderr): TransferEvents | undefined {
  const ctx = { stderrIsTTY: stream.isTTY === true, logFormat: cfg.logFormat, progress: cfg.progress, env };
  // Foreground is asked each time a bar is about to appear, not here: a daemon can be sent to the
  // background (bg) and brought back (fg) while it runs.
  if (!shouldShowProgress({ ...ctx, foreground: undefined })) return undefined;
  return new ProgressBar({ stream, allowed: () => shouldShowProgress({ ...ctx, foreground: readForeground() }), now: Date.now });
}

/** Is this process in its terminal's foreground? undefined where /proc is not there to ask. */
function readForeground(): boolean | undefined {
  try {
    return parseForeground(readFileSync("/proc/self/stat", "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The stream minus cli-progress's cursor save/restore (ESC 7 / ESC 8, written at start and stop):
 * once log lines have scrolled past the bar, restoring jumps back onto one of them, and the
 * clear-on-stop then erases that log line instead of the bar.
 */
function withoutCursorSave(stream: BarStream): NodeJS.WritableStream {
  const proxy = {
    isTTY: stream.isTTY,
    get columns() {
      return stream.columns;
    },
    write(chunk: string, cb?: (err?: Error | null) => void): boolean {
      if (chunk === "\x1B7" || chunk === "\x1B8") return true;
      return stream.write(chunk, cb);
    },
  };
  // cli-progress and node:readline only call write() and read isTTY and columns.
  return proxy as unknown as NodeJS.WritableStream;
}

interface Batch extends ProgressCounts {
  role: Role;
  files: number;
  bytes: number;
  filesDone: number;
  bytesDone: number;
  failed: number;
  bytesRate: Smoothed;
  workRate: Smoothed;
  timer: NodeJS.Timeout;
  bar: CliProgress.SingleBar | undefined;
}

/** One bar per batch (a push, a pull, a watch batch); observers must not throw, so this never does. */
class ProgressBar implements TransferEvents {
  private batch: Batch | undefined;
  private readonly stream: BarStream;
  private readonly allowed: () => boolean;
  private readonly now: () => number;

  constructor(d: { stream: BarStream; allowed: () => boolean; now: () => number }) {
    this.stream = d.stream;
    this.allowed = d.allowed;
    this.now = d.now;
  }

  start(t: { role: Role; files: number; bytes: number }): void {
    this.finish();
    if (t.files === 0) return;
    const at = this.now();
    this.batch = {
      role: t.role, files: t.files, bytes: t.bytes, filesDone: 0, bytesDone: 0, failed: 0,
      bytesRate: startRate(at, 0), workRate: startRate(at, 0),
      // Unref'd: a pending bar never keeps a finished process alive.
      timer: setTimeout(() => this.show(), SHOW_AFTER_MS).unref(),
      bar: undefined,
    };
  }

  file(t: { bytes: number }): void {
    if (!this.batch) return;
    this.batch.filesDone++;
    this.batch.bytesDone += t.bytes;
  }

  failed(): void {
    if (this.batch) this.batch.failed++;
  }

  end(): void {
    this.finish();
  }

  private show(): void {
    const b = this.batch;
    if (!b || !this.allowed()) return;
    try {
      // Loaded on first use: a run that never shows a bar never pays for it.
      const { SingleBar } = require("cli-progress") as typeof CliProgress;
      const bar = new SingleBar({
        stream: withoutCursorSave(this.stream),
        // One column spare: a line filling the last column leaves the terminal about to wrap.
        format: (_o, params) => this.frame(b, params.maxWidth - 1),
        fps: 10,
        clearOnComplete: true,
        // Each frame is cut to the terminal's width (the line already fits): no escape codes that
        // turn wrapping off, which a killed process would leave behind.
        linewrap: true,
        // Redraw every frame, changed or not: a pretty log line may have erased the bar in between.
        forceRedraw: true,
        synchronousUpdate: false,
        hideCursor: false,
        gracefulExit: false,
      });
      bar.start(1, 0);
      b.bar = bar;
      setTransientLine({ clear: () => this.erase(), redraw: () => bar.render() });
    } catch {
      // A bar that cannot be drawn is not worth failing a transfer for.
    }
  }

  /** The bar's text; called by cli-progress on every frame, which is also when the rates are sampled. */
  private frame(b: Batch, width: number): string {
    const at = this.now();
    b.bytesRate = sampleRate(b.bytesRate, at, b.bytesDone);
    b.workRate = sampleRate(b.workRate, at, workOf(b).done);
    return formatProgressLine({ ...b, bytesPerSecond: b.bytesRate.perSecond, etaSeconds: etaSeconds(b, b.workRate.perSecond) }, width);
  }

  private erase(): void {
    cursorTo(this.stream, 0);
    clearLine(this.stream, 0);
  }

  private finish(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    clearTimeout(b.timer);
    if (!b.bar) return;
    setTransientLine(undefined);
    try {
      // clearOnComplete: the line is erased, so the summary log line that follows starts clean.
      b.bar.stop();
    } catch {
      this.erase();
    }
  }
}
