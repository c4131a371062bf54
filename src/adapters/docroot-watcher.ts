/**
 * The one docroot watcher of the daemons that publish a docroot (`watch`, `sync`): chokidar events
 * gathered into batches by a quiet window plus a cap, like lsyncd. A batch settles `delayMs` after
 * the last event, but never later than `maxDelayMs` after its first: a rename or a burst of ten
 * thousand files is one batch, and a file rewritten without pause still gets published. Temp files
 * (the puller's and the uploader's hidden names) and the ignored directories (state, conflicts)
 * are never reported.
 */
import path from "node:path";
import { TEMP_MARK } from "../core/paths.ts";
import { errorFields, type Logger } from "./logger.ts";

/** Timing of the batches. */
export interface QuietWindowOptions {
  /** A batch settles this long after its last event… */
  readonly delayMs: number;
  /** …but at most this long after its first. */
  readonly maxDelayMs: number;
}

/**
 * Paths gathered until the window settles, then handed to `onSettle` in one set. Pure timing over
 * `setTimeout`, apart from chokidar, so the rule is tested on its own.
 */
export class QuietWindow {
  private readonly o: QuietWindowOptions;
  private readonly onSettle: (paths: ReadonlySet<string>) => void;
  private paths = new Set<string>();
  private first = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(o: QuietWindowOptions, onSettle: (paths: ReadonlySet<string>) => void) {
    this.o = o;
    this.onSettle = onSettle;
  }

  /** One event for `rel` (a docroot-relative POSIX path). */
  add(rel: string): void {
    const now = Date.now();
    if (!this.timer) this.first = now;
    else clearTimeout(this.timer);
    this.paths.add(rel);
    // The quiet window after this event, cut to what is left of the cap since the first.
    this.timer = setTimeout(() => this.settle(), Math.max(0, Math.min(this.o.delayMs, this.o.maxDelayMs - (now - this.first))));
  }

  /** Drop what is pending; nothing settles after this. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.paths = new Set();
  }

  private settle(): void {
    this.timer = undefined;
    const batch = this.paths;
    this.paths = new Set();
    this.onSettle(batch);
  }
}

/** What to watch and how to batch it. */
export interface DocrootWatcherOptions extends QuietWindowOptions {
  readonly docroot: string;
  /** Never reported, nor anything under them (the state and conflicts directories). */
  readonly ignoreDirs: readonly string[];
}

/** A running watcher. */
export interface DocrootWatcher {
  close(): Promise<void>;
}

/**
 * Watch `docroot` (resolves once chokidar's first scan is done); each settled batch of changed
 * paths (relative, POSIX separators) goes to `onBatch`.
 */
export async function watchDocroot(o: DocrootWatcherOptions, onBatch: (paths: ReadonlySet<string>) => void, log: Logger): Promise<DocrootWatcher> {
  const { watch } = await import("chokidar");
  const docroot = path.resolve(o.docroot);
  const ignore = o.ignoreDirs.map((x) => path.resolve(x));
  const window = new QuietWindow(o, onBatch);
  const watcher = watch(docroot, {
    ignoreInitial: true,
    persistent: true,
    atomic: true,
    ignored: (p: string) => ignore.some((x) => p === x || p.startsWith(x + path.sep)) || path.basename(p).startsWith(TEMP_MARK),
  });
  const ready = new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  watcher.on("all", (_event: string, abs: string) => {
    const rel = path.relative(docroot, abs).split(path.sep).join("/");
    if (rel === "" || rel.startsWith("..")) return;
    window.add(rel);
  });
  watcher.on("error", (err: unknown) => log.error(errorFields(err), "watcher error"));
  await ready;
  return {
    close: async () => {
      window.close();
      await watcher.close();
    },
  };
}
