/**
 * `fansync status s3://primary [s3://region ...]`: each location's head and the fleet of nodes
 * that report there (pull --report). Without a location: what this machine's pullers, two-way nodes
 * and replicator last wrote locally (their state directories, `--status-file`), never the bucket.
 */
import path from "node:path";
import type { Config } from "../core/config.ts";
import { ExitCode, RemoteError, UsageError } from "../core/errors.ts";
import type { Location } from "../core/location.ts";
import { renderFleetTable } from "../core/node-report.ts";
import { formatAge, formatBytes } from "../core/units.ts";
import { storeFor } from "./wiring.ts";
import { type FleetStatus, readFleet } from "../engine/fleet.ts";
import { readJson } from "../adapters/state-files.ts";
import { listJobStateDirs } from "../adapters/state-dir.ts";
import { baseStateDir } from "./wiring.ts";
import type { PullStatus } from "./pull.ts";
import type { RegionStatus } from "../engine/replicator.ts";
import type { SyncStatus } from "./sync.ts";
import type { EventHealth } from "../engine/event-listener.ts";
import { statusFiles } from "./job-options.ts";

/** Everything `status` found. */
export interface StatusReport {
  /** This machine's pullers: the one `--status-file` names, then every puller state directory. */
  readonly pullers: readonly (PullStatus & { readonly file: string })[];
  readonly regions: readonly (RegionStatus & { readonly file: string })[];
  /** Two-way nodes on this machine (`fansync sync`), with the versions they kept. */
  readonly syncs: readonly (SyncStatus & { readonly file: string })[];
}

/**
 * Fleet mode: print heads and the node table; exit 4 (partial) when a location cannot be read or a
 * node is in ERROR or SILENT, so a monitoring check can run it as it is.
 */
export async function fleetStatus(cfg: Config, locations: readonly Location[], opts: { json: boolean }, signal: AbortSignal): Promise<number> {
  const sources = locations.map((loc) => ({ loc, store: storeFor(cfg, loc) }));
  const st = await readFleet(sources, { now: () => new Date(), silentAfterMs: cfg.staleAfter, signal });
  const first = st.locations[0];
  if (first?.error) throw new RemoteError(`cannot read the head of ${first.url}: ${first.error}`, { hint: "check the endpoint, the bucket name and the credentials (fansync doctor tells which)" });
  if (opts.json) process.stdout.write(JSON.stringify(st) + "\n");
  else process.stdout.write(renderFleet(st));
  const bad = st.locations.some((l) => l.error !== null) || st.fleet.counts.ERROR > 0 || st.fleet.counts.SILENT > 0;
  return bad ? ExitCode.partial : ExitCode.ok;
}

function renderFleet(st: FleetStatus): string {
  const lines: string[] = [];
  const ref = st.locations[0]?.generation ?? 0;
  const width = Math.max(...st.locations.map((l) => l.url.length));
  for (const [i, l] of st.locations.entries()) {
    if (l.error) {
      lines.push(`${l.url.padEnd(width)}  UNREADABLE  ${l.error}`);
      continue;
    }
    const age = l.time ? `${formatAge((Date.parse(st.at) - Date.parse(l.time)) / 1000)} ago` : "never published";
    const rel = i === 0 ? `${l.files ?? 0} files, ${formatBytes(l.bytes ?? 0)}, writer ${l.writer ?? "-"}` : (l.generation ?? 0) >= ref ? "in step" : `${ref - (l.generation ?? 0)} behind`;
    lines.push(`${l.url.padEnd(width)}  generation ${l.generation}  ${age}  ${rel}`);
  }
  const c = st.fleet.counts;
  lines.push("", `nodes: ${st.fleet.nodes.length} (${c.OK} OK, ${c.STALE} STALE, ${c.ERROR} ERROR, ${c.SILENT} SILENT)`);
  let text = lines.join("\n") + "\n" + renderFleetTable(st.fleet);
  for (const u of st.unreadable) text += `unreadable report: ${u}\n`;
  return text;
}

/** Print the report; exit code 4 (partial) when anything reports ERROR, so it can back a health check. */
export async function status(cfg: Config, opts: { json: boolean }): Promise<number> {
  const report = await readStatus(cfg);
  if (report.pullers.length === 0 && report.regions.length === 0 && report.syncs.length === 0) {
    throw new UsageError(`no status found (state directory ${baseStateDir(cfg)}${cfg.statusFile ? `, status file ${cfg.statusFile}` : ""})`, {
      hint: "pass the --state-dir the jobs use (a systemd unit's is /var/lib/fansync/...: see its config file's stateDir), or a puller's --status-file",
    });
  }
  // One line: easy to pipe into jq, and to tell apart from log lines.
  if (opts.json) process.stdout.write(JSON.stringify(report) + "\n");
  else process.stdout.write(render(report));
  const bad = report.pullers.some((p) => p.status === "ERROR") || report.regions.some((r) => r.status === "ERROR") || report.syncs.some((s) => s.status === "ERROR");
  return bad ? ExitCode.partial : ExitCode.ok;
}

/** Read the puller's status file (if given) and every replicator region status under the state dir. */
export async function readStatus(cfg: Config): Promise<StatusReport> {
  const file = statusFiles(cfg)?.file;
  const given = file ? await readJson<PullStatus | SyncStatus>(file) : undefined;
  // A sync node's --status-file is a sync status, not a puller's.
  const pull = given && !("kind" in given) ? given : undefined;
  const base = baseStateDir(cfg);
  const pullers: (PullStatus & { file: string })[] = pull && file ? [{ ...pull, file }] : [];
  for (const dir of await listJobStateDirs(base, "pull")) {
    const s = await readJson<PullStatus>(dir.lastStatus);
    // The same run seen through --status-file and the state directory is listed once.
    if (s && !pullers.some((p) => p.lastAttempt === s.lastAttempt && (p.docroot ?? s.docroot) === s.docroot)) pullers.push({ ...s, file: dir.lastStatus });
  }
  const syncs: (SyncStatus & { file: string })[] = [];
  if (given && "kind" in given && given.kind === "fansync-sync-status/1" && file) syncs.push({ ...given, file });
  for (const dir of await listJobStateDirs(base, "sync")) {
    const f = dir.syncStatus;
    const s = await readJson<SyncStatus>(f);
    if (s?.kind === "fansync-sync-status/1" && !syncs.some((x) => x.docroot === s.docroot && x.target === s.target)) syncs.push({ ...s, file: f });
  }
  const regions: (RegionStatus & { file: string })[] = [];
  for (const dir of await listJobStateDirs(base, "replicate")) {
    for (const f of await dir.listRegionStatus()) {
      const s = await readJson<RegionStatus>(f);
      if (s?.kind === "fansync-region-status/1") regions.push({ ...s, file: f });
    }
  }
  return { pullers, regions, syncs };
}

function render(r: StatusReport): string {
  const lines: string[] = [];
  const ago = (iso: string | null) => (iso ? `${Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))}s ago` : "never");
  for (const p of r.pullers) {
    lines.push(`puller  ${p.status.padEnd(5)} generation ${p.generation} of ${p.headGeneration} (lag ${p.lag.generations} gen, ${p.lag.seconds}s)  ${p.docroot ?? "-"} ← ${p.source || "-"}`);
    lines.push(`        last success ${ago(p.lastSuccess)}, last attempt ${ago(p.lastAttempt)}${p.lastError ? `, last error: ${p.lastError}` : ""}  [${p.file}]`);
    // --events: a queue that cannot be read means the node is polling (docs/events.md).
    if (p.events) lines.push(eventsLine(p.events, ago));
  }
  for (const g of r.regions) {
    lines.push(`region  ${g.status.padEnd(5)} ${g.region} generation ${g.generation} of ${g.primaryGeneration} (lag ${g.lag.generations} gen, ${g.lag.seconds}s)  primary ${g.primary}`);
    lines.push(`        last success ${ago(g.lastSuccess)}, last attempt ${ago(g.lastAttempt)}${g.lastError ? `, ${g.failures} failure(s), last error: ${g.lastError}` : ""}`);
  }
  for (const s of r.syncs) {
    lines.push(`sync    ${s.status.padEnd(5)} generation ${s.generation}  ${s.docroot} ⇄ ${s.target}  node ${s.node}`);
    lines.push(`        last success ${ago(s.lastSuccess)}, last attempt ${ago(s.lastAttempt)}${s.lastError ? `, last error: ${s.lastError}` : ""}`);
    if (s.events) lines.push(eventsLine(s.events, ago));
    if (s.notOwned.length > 0) lines.push(`        changed here but not owned (not published, restored): ${s.notOwned.slice(0, 5).join(", ")}${s.notOwned.length > 5 ? ", …" : ""}`);
    // Older status files have no `skipped`.
    const skipped = s.skipped ?? [];
    if (skipped.length > 0) lines.push(`        ${skipped.length} path(s) skipped (cannot be carried): ${skipped.slice(0, 3).map((k) => `${JSON.stringify(k.path)} (${k.reason})`).join(", ")}${skipped.length > 3 ? ", …" : ""}`);
    if (s.keptTotal > 0) {
      lines.push(`        ${s.keptTotal} losing version(s) kept (${s.conflictsTotal} conflict(s)) in ${s.conflictsDir}:`);
      for (const k of s.kept.slice(-10)) lines.push(`          ${k.time}  ${k.path}  ${k.reason}, ${k.version} version → ${k.kept}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** --events: a queue that cannot be read means the node is polling (docs/events.md). */
function eventsLine(e: EventHealth, ago: (iso: string | null) => string): string {
  return `        events ${e.state === "listening" ? "on" : `FAILING since ${ago(e.since)}, polling instead: ${e.lastError ?? ""}`} (${e.messages} messages)  ${e.queue}`;
}
