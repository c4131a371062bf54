/**
 * The local state of every job, in one place: where each job's directory is, what each file in it
 * is called, and the run lock. Nothing else names a state file.
 *
 * Layout under the base directory (--state-dir, $STATE_DIRECTORY, $XDG_STATE_HOME/fansync, or
 * ~/.local/state/fansync), one directory per job:
 *   push-<id>/       (push and watch: id of docroot + location)  index, remote cache, writer state
 *   pull-<id>/       (pull: id of the docroot)                   held files, head, staging, reports
 *   replicate-<id>/  (replicate: id of the primary)              region status files, writer state
 *   rollback-<id>/   (rollback: id of the location)              writer state
 *   sync-<id>/       (sync: id of docroot + location)            base, puller + uploader state, kept conflict versions
 *   location-<id>/   (every writer of one location: id of the location)  orphan ledger, capabilities
 * A writer's lease id stays in its own job's directory: a rollback must never pass for the uploader.
 */
import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { readdir } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { LocalIoError, LockedError, UsageError } from "../core/errors.ts";
import { readJson, writeFileAtomic } from "./state-files.ts";

/** The jobs that keep state. */
export type JobRole = "push" | "pull" | "replicate" | "rollback" | "sync";

function shortHash(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 12);
}

/**
 * A job's own directory under `base`: one per role and identity (docroot and/or location), so one
 * base serves several jobs. Never inside the docroot (it would be uploaded or served).
 */
export function jobStateDir(base: string, role: JobRole, identity: { docroot?: string; url?: string }): StateDir {
  const docroot = identity.docroot === undefined ? undefined : path.resolve(identity.docroot);
  const id = docroot === undefined ? shortHash(identity.url ?? "") : shortHash(`${docroot}\n${identity.url ?? ""}`);
  const dir = path.join(base, `${role}-${id}`);
  if (docroot !== undefined) {
    // Compared as written and through symlinks: a symlinked docroot (or state directory) hid a
    // state directory inside the docroot, where it would be uploaded or served (issue 18).
    const realDocroot = resolveExisting(docroot);
    if (realDocroot === path.parse(realDocroot).root) {
      throw new UsageError(`refusing to use ${realDocroot}${realDocroot !== docroot ? ` (${docroot})` : ""} as a docroot: it is the filesystem root`, { hint: "give the web server's docroot, a directory of its own" });
    }
    if (isInside(dir, docroot) || isInside(resolveExisting(dir), realDocroot)) {
      throw new UsageError(`the state directory ${dir} is inside the docroot ${docroot}${realDocroot !== docroot ? ` (${realDocroot})` : ""}`, { hint: "put --state-dir outside the docroot" });
    }
  }
  return new StateDir(dir);
}

/** `p` with its longest existing ancestor resolved through symlinks, the rest as written. */
function resolveExisting(p: string): string {
  const rest: string[] = [];
  for (let cur = path.resolve(p); ; cur = path.dirname(cur)) {
    try {
      return path.join(realpathSync(cur), ...rest.reverse());
    } catch {
      if (path.dirname(cur) === cur) return path.resolve(p);
      rest.push(path.basename(cur));
    }
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * The state every writer of one location shares on this machine (the uploader, a rollback, the
 * replicator writing a region): the orphan ledger and the capability cache, so whichever of them
 * commits next deletes what another one's interrupted commit left behind.
 */
export function locationStateDir(base: string, url: string): StateDir {
  return new StateDir(path.join(base, `location-${shortHash(url)}`));
}

/** Every state directory of one role under `base` (for `fansync status`). */
export async function listJobStateDirs(base: string, role: JobRole): Promise<StateDir[]> {
  const entries = await readdir(base, { withFileTypes: true }).catch(() => []);
  return entries.filter((d) => d.isDirectory() && d.name.startsWith(`${role}-`)).map((d) => new StateDir(path.join(base, d.name)));
}

/**
 * One job's state directory and the names of the files in it. The object also carries what the
 * jobs of one process that were handed it share in memory (a value loaded once, read-modify-writes
 * of one file taking turns): build one per directory in the wiring and pass it to each of them. Two
 * objects for one directory share nothing but the files (two processes, or two simulated ones).
 */
export class StateDir {
  readonly dir: string;
  private readonly loaded = new Map<string, Promise<unknown>>();
  private readonly turns = new Map<string, Promise<unknown>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** `load()` once per `key` for this object (concurrent callers share it); a failure is not kept. */
  once<T>(key: string, load: () => Promise<T>): Promise<T> {
    let p = this.loaded.get(key) as Promise<T> | undefined;
    if (!p) {
      p = load();
      p.catch(() => this.loaded.delete(key));
      this.loaded.set(key, p);
    }
    return p;
  }

  /** Run `update` (a read-modify-write of `file`) after every earlier one of `file` through this object. */
  inTurn<T>(file: string, update: () => Promise<T>): Promise<T> {
    const turn = (this.turns.get(file) ?? Promise.resolve()).then(update);
    this.turns.set(file, turn.catch(() => undefined));
    return turn;
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  // The uploader (push, watch).
  /** path → [size, mtimeMs, inode, sha256] of files last hashed (a no-op push reads only this). */
  get index(): string { return this.file("index.ndjson"); }
  /** The bucket's head as last seen, and the manifest it names (saves a manifest GET per run). */
  get remoteHead(): string { return this.file("remote-head.json"); }
  get remoteManifest(): string { return this.file("remote-manifest.ndjson.gz"); }

  // The generation writer (uploader, replicator, rollback).
  /** The write lease's holder id, stable across restarts (a restarted writer takes its lease back). */
  get writerId(): string { return this.file("writer-id.json"); }
  /** What each server did with conditional writes, keyed by endpoint and bucket. */
  get capabilities(): string { return this.file("capabilities.json"); }
  /** Keys a commit may have left outside the manifest (see OrphanLedger); in a location's directory. */
  get ledger(): string { return this.file("ledger.json"); }

  /** Packs (push/watch --packs): the pack index last read or written, and its ETag (a later push asks with If-None-Match). */
  get packIndexCache(): { readonly bytes: string; readonly etag: string } {
    return { bytes: this.file("packs-index.json.gz"), etag: this.file("packs-index.etag") };
  }

  // The two-way node (sync).
  /** The generation it last converged to: its files, and its head. */
  get syncBaseFiles(): string { return this.file("sync-base.ndjson"); }
  get syncBaseHead(): string { return this.file("sync-base.json"); }
  /** Every version it kept outside the docroot, a record per line. */
  get syncKept(): string { return this.file("conflicts.ndjson"); }
  /** Its status after every round (`fansync status` reads it). */
  get syncStatus(): string { return this.file("sync-status.json"); }

  // The puller.
  get pullFiles(): string { return this.file("pull-files.ndjson"); }
  get pullHead(): string { return this.file("pull-head.json"); }
  get pullStaging(): string { return this.file("pull-staging.json"); }
  /** Temp files an interrupted pull verified (path, temp name, size, sha256): the next run renames them instead of fetching again. */
  get pullStaged(): string { return this.file("pull-staged.ndjson"); }
  get lagCheck(): string { return this.file("pull-lag-check.json"); }
  get lastReport(): string { return this.file("report-last.json"); }
  /**
   * --on-publish / --on-apply: the last generation each location's hook ran for (never twice). One
   * file per hook: a sync node runs both, on their own queues, for different generations.
   */
  hookRecord(hook: "on-publish" | "on-apply"): string { return this.file(hook === "on-publish" ? "hook-last.json" : "hook-last-on-apply.json"); }
  /** The last status when no --status-file is written (a failed cron run repeats what it knew). */
  get lastStatus(): string { return this.file("last-status.json"); }

  // The replicator.
  /** One status file per region (`fansync status` lists them). */
  regionStatus(regionUrl: string): string {
    const bucket = /^s3:\/\/([^/]+)/.exec(regionUrl)?.[1] ?? "region";
    return this.file(`region-${bucket}-${shortHash(regionUrl).slice(0, 8)}.json`);
  }
  /** Per region: the primary's pack index the replicator last carried there (beside its status). */
  regionPackCarry(regionUrl: string): string {
    return this.file(`packs-${path.basename(this.regionStatus(regionUrl))}`);
  }
  /** Every region status file here. */
  async listRegionStatus(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => /^region-.*-[0-9a-f]{8}\.json$/.test(n)).sort().map((n) => this.file(n));
  }

  /** The run lock of `role` in this directory (see {@link acquireRunLock}). */
  lock(role: JobRole): Promise<RunLock> {
    return acquireRunLock(this.file(`${role}.lock`));
  }
}

/** A held run lock. */
export interface RunLock {
  release(): Promise<void>;
}

/**
 * Take the exclusive run lock `file` (a cron overlap exits with {@link LockedError}).
 *
 * The exclusion is a Linux abstract-namespace socket named after the lock file's path: binding it
 * is atomic, only one process can hold the name, and the kernel releases it the moment its holder
 * exits, however it exits (SIGKILL, OOM, a reboot). So a dead holder never blocks the next run, a
 * reused PID means nothing, and there is no stale-lock takeover that could delete a lock another
 * run has just taken. The file itself only tells a person who holds the lock (pid, since when).
 * The name lives in the network namespace: processes sharing a state directory must share one.
 */
export async function acquireRunLock(file: string): Promise<RunLock> {
  const abs = path.resolve(file);
  const server = net.createServer();
  const name = `\0fansync-lock:${createHash("sha256").update(abs).digest("hex")}`;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: name, exclusive: true }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
      const holder = await readJson<{ pid?: number; since?: string }>(abs).catch(() => undefined);
      const who = holder?.pid ? `pid ${holder.pid}${holder.since ? `, since ${holder.since}` : ""}` : "another process";
      throw new LockedError(`another fansync run (${who}) holds ${abs}; exiting`);
    }
    throw err;
  }
  // The lock must never keep a finished process alive.
  server.unref();
  try {
    await writeFileAtomic(abs, JSON.stringify({ pid: process.pid, since: new Date().toISOString() }) + "\n");
  } catch (err) {
    server.close();
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new LocalIoError(`cannot write the state directory ${path.dirname(abs)} (${code})`, { cause: err, hint: "make it writable by the user fansync runs as, or pass --state-dir" });
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
