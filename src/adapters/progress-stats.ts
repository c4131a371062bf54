/**
 * `--stats <duration>`: progress as log lines, for runs nobody watches on a terminal (systemd's
 * journal, cron). Like rclone's --stats: every interval while a batch runs, a line with files,
 * bytes, rate and ETA, so a long first sync does not look hung. On by default (every 10 s) when
 * stderr is not a terminal: a run shorter than that prints none.
 */
import type { Config } from "../core/config.ts";
import { etaSeconds, formatStatsLine, type ProgressCounts, workOf } from "../core/progress-format.ts";
import type { Role, TransferEvents } from "../core/transfer-events.ts";
import type { Logger } from "./logger.ts";

/** The default interval when stderr is not a terminal. */
export const DEFAULT_STATS_MS = 10_000;

/** The stats observer for a command, or undefined when off (`--stats 0`, or a terminal without --stats). */
export function statsLinesFor(cfg: Pick<Config, "stats">, log: Logger, stderrIsTTY = process.stderr.isTTY === true): TransferEvents | undefined {
  const every = cfg.stats ?? (stderrIsTTY ? 0 : DEFAULT_STATS_MS);
  return every > 0 ? new StatsLines(every, log, Date.now) : undefined;
}

interface Batch extends ProgressCounts {
  role: Role;
  filesDone: number;
  bytesDone: number;
  failed: number;
  startedAt: number;
  timer: NodeJS.Timeout;
}

/** One timer per batch; observers must not throw, so this never does. */
class StatsLines implements TransferEvents {
  private batch: Batch | undefined;
  private readonly everyMs: number;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(everyMs: number, log: Logger, now: () => number) {
    this.everyMs = everyMs;
    this.log = log;
    this.now = now;
  }

  start(t: { role: Role; files: number; bytes: number }): void {
    this.end();
    if (t.files === 0) return;
    // Unref'd: a pending line never keeps a finished process alive.
    const timer = setInterval(() => this.line(), this.everyMs).unref();
    this.batch = { role: t.role, files: t.files, bytes: t.bytes, filesDone: 0, bytesDone: 0, failed: 0, startedAt: this.now(), timer };
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
    if (this.batch) clearInterval(this.batch.timer);
    this.batch = undefined;
  }

  private line(): void {
    const b = this.batch;
    if (!b) return;
    try {
      // Averages over the whole batch: a line every few seconds needs no smoothing.
      const seconds = Math.max(0.001, (this.now() - b.startedAt) / 1000);
      const bytesPerSecond = b.bytesDone / seconds;
      const eta = etaSeconds(b, workOf(b).done / seconds);
      const { role, files, bytes, filesDone, bytesDone, failed } = b;
      this.log.info({ role, files, bytes, filesDone, bytesDone, failed, bytesPerSecond: Math.round(bytesPerSecond), etaSeconds: eta === undefined ? undefined : Math.round(eta) }, formatStatsLine({ ...b, bytesPerSecond, etaSeconds: eta }));
    } catch {
      // A progress line is not worth failing a transfer for.
    }
  }
}
