/**
 * Which integration test files run on which server (issue 26): the real-server suite keeps the
 * protocol edges (conditional writes, versioning, multipart, signing on the wire, the CLI against
 * a real server, each server's quirks) on every server; engine logic, and faults that a local proxy
 * makes whatever the server behind it, run once, on the reference server (moto), and more and more
 * on MemoryStore in test/unit and in the simulation. One list, here:
 *   edge    every test of the file runs on every server
 *   engine  the file runs on the reference server only
 *   mixed   the file runs on every server; its engine-logic tests start with
 *           `if (skipEngineTier(t)) return;` and are skipped (counted, with the reason) elsewhere
 * test/run.sh asks this file which files to run on each server (`node test/helpers/integ-tiers.ts
 * files <edge|all>`); test/unit/integ-tiers.test.ts fails when a file has no tier, when a mixed
 * file marks no test or an edge or engine file marks one, and when docs/testing.md's table (printed
 * by `node test/helpers/integ-tiers.ts table`) is not this list.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import type { TestContext } from "node:test";

/** A file's tier; see the opening comment. */
export type Tier = "edge" | "engine" | "mixed";

/** One file's tier, why, and for engine logic its fast MemoryStore twin ("none yet" when there is none). */
export interface TierEntry {
  readonly tier: Tier;
  readonly why: string;
  /** Where the engine logic is also tested without a server (engine and mixed files). */
  readonly twin?: string;
}

/** The server every tier runs on. */
export const REFERENCE_SERVER = "moto";

/** The environment variable test/run.sh sets to "edge" on every server but the reference. */
export const TIER_ENV = "FANSYNC_INTEG_TIER";

/** Every test/integ file (without `.integ.test.ts`) and its tier. */
export const INTEG_TIERS: Readonly<Record<string, TierEntry>> = {
  "after-generation": { tier: "engine", why: "CloudFront invalidations (moto is the only server with CloudFront) and the hooks", twin: "unit: invalidation-plan, cdn-invalidator (the plan; hooks none yet)" },
  availability: { tier: "mixed", why: "edge: multipart on an unversioned bucket records no version id; the rest is repair logic over a proxy", twin: "simulation (kill points); unreadable files and key-less names none yet" },
  bounded: { tier: "engine", why: "hostile bodies are made by the proxy, not the server", twin: "none yet (the adapters' bounded reads need HTTP)" },
  "config-positionals": { tier: "engine", why: "the CLI reads its locations from --config; no server behaviour", twin: "unit: config (validation)" },
  doctor: { tier: "edge", why: "probes each server's conditional writes, versioning and credential checks" },
  events: { tier: "edge", why: "bucket notifications through SNS/SQS on the servers that have them (moto, LocalStack)" },
  fallback: { tier: "engine", why: "source order and CRR-style arrival, a region down behind a proxy", twin: "unit: source-order (the rule); none yet for the puller's fallback" },
  "faults-crash": { tier: "engine", why: "SIGKILL at seeded points; crash consistency is engine logic", twin: "simulation (crashes of master and pullers)" },
  "faults-hostile": { tier: "mixed", why: "edge: rejected credentials and clock skew (what each server checks); the rest is hostile input and local checks", twin: "unit: manifest, paths (hostile entries)" },
  "faults-network": { tier: "engine", why: "faults are made by the proxy, not the server", twin: "simulation (faults before and after effect); unit: lean-http (retries)" },
  "faults-node": { tier: "mixed", why: "edge: a directory that became a file (versitygw's prefix-clash quirk); the rest is the node's local safety", twin: "unit: engines-memory (prefix clash); none yet for the rest" },
  "faults-race": { tier: "edge", why: "the head's conditional write and, without one (fauxqs), the lease read-back" },
  "faults-replicate": { tier: "engine", why: "proxy faults and kills during replicate", twin: "simulation (replicator actor)" },
  "faults-sync": { tier: "engine", why: "three sync daemons under proxy faults; convergence is engine logic", twin: "simulation (sync actors, flips)" },
  fleet: { tier: "engine", why: "status reports and the daemons' HTTP endpoints", twin: "unit: fleet-view (the view); none yet for the endpoints" },
  "generation-writer": { tier: "engine", why: "the writer's failure rules, over a proxy", twin: "simulation (writer faults); none yet as a unit test" },
  heal: { tier: "engine", why: "answers rewritten by the proxy, killed runs adopting their work", twin: "simulation (some states); none yet for weak ETags" },
  history: { tier: "edge", why: "rollback from old versions (versioning on each server)" },
  "lean-http": { tier: "edge", why: "the lean data path's requests and signatures on the wire" },
  "object-store-contract": { tier: "edge", why: "the ObjectStore contract on each server (MemoryStore passes the same cases)" },
  operator: { tier: "engine", why: "CLI output, signals, logs and local files; no server behaviour", twin: "none yet (child-process behaviour)" },
  packs: { tier: "engine", why: "pack planning and fallback to path-keyed objects", twin: "unit: engines-memory (packs), pack-format" },
  progress: { tier: "engine", why: "the progress bar on a terminal", twin: "unit: progress-format" },
  pull: { tier: "edge", why: "the puller's CLI, conditional GETs and reads by version or ETag" },
  push: { tier: "edge", why: "the uploader's CLI, the head's conditional write, the lease on versioned buckets" },
  replicate: { tier: "edge", why: "server-side copy, and streaming across endpoints" },
  signing: { tier: "mixed", why: "edge: signed heads carried through each server; the hostile-bucket cases are engine logic", twin: "unit: signing; simulation self-test (a skipped check)" },
  "status-page": { tier: "engine", why: "the status page in chromium", twin: "none yet (a browser)" },
  "sync-apply-kill": { tier: "engine", why: "a sync node stopped between apply and base", twin: "unit: engines-memory (the same scenario)" },
  "sync-events": { tier: "engine", why: "sync woken by events (moto's SNS/SQS); events.integ keeps the edge", twin: "unit: events-wake" },
  "sim-heal": { tier: "edge", why: "replicate and rollback across a file ↔ directory flip on each server (versitygw's prefix clash), sync --verify re-uploading an overwritten object", twin: "unit: prefix-clash-memory, adversary-memory; simulation (adversary, quirks)" },
  "sync-heal": { tier: "mixed", why: "edge: dir→file settled on each server (versitygw's prefix clash); the rest is sync's conflict rules", twin: "unit: engines-memory (two-way, prefix clash), sync-plan; simulation (flips)" },
  sync: { tier: "mixed", why: "edge: refusal without conditional writes (fauxqs) and two writers meeting; the rest is sync's rules", twin: "unit: engines-memory (two-way), sync-plan; simulation (sync actors)" },
  "transfer-threads": { tier: "mixed", why: "edge: PUTs and GETs signed and sent by transfer threads on each server; the rest is hostile answers over a proxy", twin: "unit: transfer-threads (errors across threads)" },
  trust: { tier: "engine", why: "launderings of unverified generations; needs conditional writes and versioning (moto)", twin: "unit: signing; none yet on MemoryStore (the simulation's adversary is off in CI)" },
  watch: { tier: "engine", why: "the watcher's batching and SIGTERM", twin: "none yet" },
  writer: { tier: "engine", why: "the writer's rules through each engine, over a proxy", twin: "simulation (writers under faults)" },
};

const INTEG_DIR = path.resolve(import.meta.dirname, "..", "integ");
const SUFFIX = ".integ.test.ts";

/** The integration test files on disk, by name without the suffix. */
export function integFiles(dir = INTEG_DIR): string[] {
  return readdirSync(dir).filter((f) => f.endsWith(SUFFIX)).map((f) => f.slice(0, -SUFFIX.length)).sort();
}

/** The files a run of `tier` runs ("all" on the reference server, "edge" elsewhere); throws naming any file without a tier. */
export function filesFor(tier: "all" | "edge", dir = INTEG_DIR): string[] {
  const files = integFiles(dir);
  const missing = files.filter((f) => !INTEG_TIERS[f]);
  if (missing.length) throw new Error(`no tier for ${missing.map((f) => f + SUFFIX).join(", ")}: add each to INTEG_TIERS in test/helpers/integ-tiers.ts`);
  return files.filter((f) => tier === "all" || INTEG_TIERS[f]?.tier !== "engine").map((f) => path.join("test", "integ", f + SUFFIX));
}

/**
 * In a mixed file, the first line of an engine-logic test: true (the test is skipped, saying why)
 * when this run is the edge tier, i.e. test/run.sh runs it on a server other than the reference.
 * A file run by hand runs every test.
 */
export function skipEngineTier(t: TestContext): boolean {
  if (process.env[TIER_ENV] !== "edge") return false;
  t.skip(`engine logic: runs on ${REFERENCE_SERVER} only (docs/testing.md, tiers)`);
  return true;
}

/** docs/testing.md's table of the tiers, from INTEG_TIERS. */
export function tierTable(): string {
  const rows = Object.entries(INTEG_TIERS).sort(([a], [b]) => a.localeCompare(b)).map(([f, e]) => `| ${f} | ${e.tier} | ${e.why} | ${e.tier === "edge" ? "" : (e.twin ?? "none yet")} |`);
  return ["| file (test/integ/…integ.test.ts) | tier | why | engine logic without a server |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

if (import.meta.main) {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === "files" && (arg === "all" || arg === "edge")) process.stdout.write(filesFor(arg).join("\n") + "\n");
  else if (cmd === "table") process.stdout.write(tierTable() + "\n");
  else {
    process.stderr.write("usage: node test/helpers/integ-tiers.ts files <all|edge> | table\n");
    process.exit(64);
  }
}
