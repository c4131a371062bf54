/**
 * Options that several commands build from a resolved config the same way, built once here (push,
 * watch and sync build an uploader; pull and sync a puller; pull and sync name their node and keep
 * their status files; the uploader and rollback publish with the same tuning). A rule written twice drifts: the node name once lost its leading-symbol rule
 * in sync only, and the status file's text twin was spelled two ways.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Config, type ConfigFor, type WriterTuning, writerTuning } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import { compileCacheControl, compileFilter, parseFilterFile, type PathFilter } from "../core/filters.ts";
import { formatLocation, type Location } from "../core/location.ts";
import type { SigningKey, TrustPolicy } from "../core/signing.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { resolveGroup } from "../adapters/groups.ts";
import { defaultTransferThreads } from "../engine/transfer-threads.ts";
import type { PullerOptions } from "../engine/puller.ts";
import { textPath } from "../engine/pull-job.ts";
import type { UploaderOptions } from "../engine/uploader.ts";
import { leaseTtlMs, locationState } from "./wiring.ts";

/** The poll interval of a daemon whose event queue cannot be read (the default of a node without events). */
export const FALLBACK_INTERVAL_MS = 2000;

/** `--exclude` and the patterns of `--exclude-from` (a file that cannot be read is a usage error). */
export function readExcludes(cfg: Config): string[] {
  if (!cfg.excludeFrom) return [...cfg.exclude];
  let text: string;
  try {
    text = readFileSync(cfg.excludeFrom, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read --exclude-from ${cfg.excludeFrom}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return [...cfg.exclude, ...parseFilterFile(text)];
}

/**
 * What of the docroot is published: `--exclude`, `--exclude-from` and `--include`, and never the
 * absolute paths in `own` (a node's own status files inside its docroot: each node's differ).
 */
export function docrootFilter(cfg: Config, docroot: string, own: readonly string[] = []): PathFilter {
  const filter = compileFilter({ exclude: readExcludes(cfg), include: cfg.include });
  if (own.length === 0) return filter;
  const skip = new Set(own.map((f) => path.relative(docroot, f).split(path.sep).join("/")));
  return { matches: (p) => !skip.has(p) && filter.matches(p), prunesDir: (d) => filter.prunesDir(d) };
}

/** This node's name in reports and conflict copies: `--node-id`, else the host name made a valid key segment. */
export function nodeName(cfg: Config): string {
  // A name that is only symbols becomes "node".
  return cfg.nodeId ?? (os.hostname().replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 64) || "node");
}

/**
 * `--status-file` (absolute) and its plain-line twin (`x.json` → `x.txt`, the rule the pull job
 * writes by), or none. The puller never deletes them and the uploader never publishes them.
 */
export function statusFiles(cfg: Config): { readonly file: string; readonly text: string; readonly both: readonly string[] } | undefined {
  if (!cfg.statusFile) return undefined;
  const file = path.resolve(cfg.statusFile);
  const text = textPath(file);
  return { file, text, both: [file, text] };
}

/**
 * The puller's options. `pull` takes its checks and deletions from the flags; a `sync` node's
 * puller only applies generations (its dry run is planned elsewhere, its docroot's extra files are
 * its own to publish, and the node re-reads its docroot every round anyway).
 */
export async function pullerOptions(cfg: ConfigFor<"pull" | "sync">, role: "pull" | "sync", trust: TrustPolicy | undefined): Promise<Omit<PullerOptions, "state">> {
  const pull = role === "pull";
  return {
    docroot: path.resolve(cfg.docroot),
    concurrency: cfg.concurrency,
    threads: cfg.threads ?? defaultTransferThreads(),
    maxDelete: cfg.maxDelete,
    force: cfg.force,
    dryRun: pull && cfg.dryRun,
    deleteExtraneous: pull && cfg.deleteExtraneous,
    verify: pull && cfg.verify,
    checksum: pull && cfg.checksum,
    keep: statusFiles(cfg)?.both ?? [],
    maxJournals: 20,
    trust,
    maxAgeMs: pull ? cfg.maxAge : undefined,
    allowSetuid: pull && cfg.allowSetuid,
    chmod: cfg.chmod,
    gid: cfg.group === undefined ? undefined : await resolveGroup(cfg.group),
  };
}

/**
 * What every writer of `loc` that publishes files from this machine is tuned with (uploader,
 * rollback): the location's shared state (ledger, capabilities), transfers and guard, Cache-Control.
 */
export function publishTuning(cfg: Config, loc: Location, shared: StateDir = locationState(cfg, formatLocation(loc))): WriterTuning & { readonly shared: StateDir; readonly cacheControl: (p: string) => string | undefined; readonly leaseTtlMs: number } {
  return { shared, ...writerTuning(cfg), cacheControl: compileCacheControl(cfg.cacheControl), leaseTtlMs: leaseTtlMs() };
}

/**
 * The uploader's options for `push`/`watch` (the whole docroot, `--verify`, `--approve-deletes`,
 * heartbeats) or for a `sync` node (its filter hides its status files; it builds only on verified
 * heads; its dry run is planned elsewhere).
 */
export function uploaderOptions(
  cfg: ConfigFor<"push" | "watch" | "sync">,
  o: { readonly state: StateDir; readonly loc: Location; readonly filter: PathFilter; readonly kind: "push" | "watch" | "sync"; readonly signer: { readonly key: SigningKey; readonly site: string } | undefined; readonly trust?: TrustPolicy | undefined; readonly shared?: StateDir },
): UploaderOptions {
  const oneWay = o.kind !== "sync";
  return {
    docroot: path.resolve(cfg.docroot),
    loc: o.loc,
    state: o.state,
    // o.shared: the location's state the caller already asked (sync's conditional-write check), so both share its turns.
    ...publishTuning(cfg, o.loc, o.shared),
    dryRun: oneWay && cfg.dryRun,
    filter: o.filter,
    threads: cfg.threads ?? defaultTransferThreads(),
    verify: oneWay && cfg.verify,
    approveDeletes: oneWay && cfg.approveDeletes,
    signer: o.signer,
    trust: o.trust,
    heartbeatMs: oneWay ? cfg.heartbeat : undefined,
    writerKind: o.kind,
  };
}
