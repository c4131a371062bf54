// Benchmark orchestrator (`npm run bench`, `npm run bench:quick`): generates trees, runs every tool
// through the counting proxy against a fresh S3 server, and writes bench/RESULTS.md and the chart.
// Settings come from the environment; see bench/README.md.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { diffCounts, startCountingProxy } from "./lib/counting-proxy.ts";
import { GNU_TIME, killActiveRuns, readCpuSeconds, runMeasured, type CommandSpec } from "./lib/measure.ts";
import { awsTool, baseEnv, fansyncTool, httpLoopTool, rcloneTool, s3cmdTool, sdkLoopTool, type Tool, type ToolContext } from "./lib/peers.ts";
import { fleetSettingsFromEnv, runFleet } from "./lib/fleet.ts";
import { runPropagation } from "./lib/propagation.ts";
import { runSyncPropagation, type SyncPropagation } from "./lib/sync-propagation.ts";
import { eventsSettingsFromEnv, runEventsBench, type EventsResult } from "./lib/events-bench.ts";
import { type Interrupted, runInterrupted } from "./lib/interrupted.ts";
import type { BenchReport, FleetResult, Propagation, Row, RunRecord } from "./lib/results.ts";
import { renderReport } from "./lib/report.ts";
import { writeChart } from "./lib/chart.ts";
import { serverVersion, startS3Server, type ServerKind } from "./lib/server.ts";
import { hash32, listingDigest, planTree, TREE_MTIME, writeTree, writeTreeFile, type TreeEntry, type TreeSpec } from "./lib/tree.ts";
import { compareListing, describeCheck, readTreeSizes } from "./lib/verify.ts";

const benchDir = dirname(fileURLToPath(import.meta.url));
const benchRepo = resolve(benchDir, "..");

// ---- settings -------------------------------------------------------------------------------

const scale = process.env.BENCH_SCALE === "full" ? "full" : "small";
const runs = Math.max(1, Number(process.env.BENCH_RUNS ?? 3) || 3);
// Huge trees take minutes per run: one run each at full scale, as the issue asks.
const hugeRuns = scale === "full" ? 1 : runs;
const concurrency = Math.max(1, Number(process.env.BENCH_CONCURRENCY ?? 16) || 16);
const seed = Number(process.env.BENCH_SEED ?? 42) || 42;
const serverKind: ServerKind = process.env.BENCH_SERVER === "moto" ? "moto" : "fauxqs";
const unicode = process.env.BENCH_UNICODE !== "0";
const fansyncRepo = resolve(process.env.FANSYNC_REPO ?? benchRepo);
const workDir = resolve(process.env.BENCH_WORKDIR ?? join(tmpdir(), "fansync-bench"));
const stepTimeoutMs = (Number(process.env.BENCH_TIMEOUT_S) || (scale === "full" ? 3600 : 600)) * 1000;
const startupRuns = Math.max(1, Number(process.env.BENCH_STARTUP_RUNS ?? 10) || 10);
const onlyTools = process.env.BENCH_TOOLS?.split(",").filter((s) => s !== "");
const onlyScenarios = process.env.BENCH_SCENARIOS?.split(",").filter((s) => s !== "");
const onlyTrees = process.env.BENCH_TREES?.split(",").filter((s) => s !== "");
// BENCH_OUT_MD: write the report elsewhere (a small-scale sample must not replace the full RESULTS.md).
const resultsMd = resolve(process.env.BENCH_OUT_MD ?? join(benchDir, "RESULTS.md"));
// The chart goes beside the report: results.png for RESULTS.md, <name>.png for BENCH_OUT_MD=<name>.md.
const chartPng = process.env.BENCH_OUT_MD ? resultsMd.replace(/\.md$/, "") + ".png" : join(benchDir, "results.png");
const outDir = join(benchDir, "out");
// Raw figures beside the report's name: out/results.json for RESULTS.md, <name>.json for BENCH_OUT_MD.
const resultsJson = process.env.BENCH_OUT_MD ? resultsMd.replace(/\.md$/, "") + ".json" : join(outDir, "results.json");
const BUCKET = "fansync-bench";
const PREFIX = "site";

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

// ---- trees ----------------------------------------------------------------------------------

/**
 * Which steps a tree is put through, and how many runs. `wan`: every request crosses a proxy that
 * holds it `delayMs` each way (a bucket is never on localhost), with every tool at the same
 * concurrency ("equal") or at its own default ("defaults"); only fansync and rclone run there.
 */
type TreePlan = { spec: TreeSpec; steps: readonly StepKind[]; runs: number; fansyncOnly: boolean; wan?: { delayMs: number; mode: "equal" | "defaults" } };

/** The name a plan's rows are keyed by: the tree's, with the WAN variant appended. */
function planName(plan: TreePlan): string {
  return plan.wan === undefined ? plan.spec.name : `${plan.spec.name}-wan${plan.wan.delayMs}ms-${plan.wan.mode}`;
}

/** Tools that run in a WAN plan: fansync against the peer the goals name. */
const WAN_TOOLS = new Set(["fansync", "rclone"]);
const wanDelayMs = Math.max(0, Number(process.env.BENCH_WAN_DELAY_MS ?? 30) || 30);
type StepKind = "upload" | "noop-push" | "download" | "noop-pull" | "change-push" | "change-pull";

const ALL_STEPS: readonly StepKind[] = ["upload", "noop-push", "download", "noop-pull", "change-push", "change-pull"];
const KB = 1024;
const MB = 1024 * 1024;
const site = (name: string, files: number): TreeSpec => ({
  name,
  files,
  dirs: Math.max(10, Math.round(files / 100)),
  minSize: KB,
  maxSize: 20 * KB,
  bigFiles: 0,
  bigMinSize: 0,
  bigMaxSize: 0,
  unicode,
});
const sparse = (name: string, files: number): TreeSpec => ({ ...site(name, files), dirs: Math.round(files / 100), minSize: 16, maxSize: 512 });

const treePlans: TreePlan[] =
  scale === "full"
    ? [
        { spec: site("10k", 10_000), steps: ALL_STEPS, runs, fansyncOnly: false },
        { spec: site("100k", 100_000), steps: ALL_STEPS, runs: hugeRuns, fansyncOnly: false },
        {
          spec: { ...site("mixed", 2_004), dirs: 20, bigFiles: 4, bigMinSize: 50 * MB, bigMaxSize: 200 * MB },
          steps: ["upload", "download"],
          runs: hugeRuns,
          fansyncOnly: false,
        },
        { spec: sparse("1M-sparse", 1_000_000), steps: ["upload", "download", "noop-push", "noop-pull"], runs: hugeRuns, fansyncOnly: true },
        { spec: site("10k", 10_000), steps: ["upload", "download"], runs, fansyncOnly: false, wan: { delayMs: wanDelayMs, mode: "equal" } },
        { spec: site("10k", 10_000), steps: ["upload", "download"], runs, fansyncOnly: false, wan: { delayMs: wanDelayMs, mode: "defaults" } },
      ]
    : [
        { spec: site("2k", 2_000), steps: ALL_STEPS, runs, fansyncOnly: false },
        { spec: site("5k", 5_000), steps: ALL_STEPS, runs, fansyncOnly: false },
        { spec: sparse("20k-sparse", 20_000), steps: ["upload", "download", "noop-push", "noop-pull"], runs, fansyncOnly: true },
        { spec: site("2k", 2_000), steps: ["upload", "download"], runs, fansyncOnly: false, wan: { delayMs: wanDelayMs, mode: "equal" } },
        { spec: site("2k", 2_000), steps: ["upload", "download"], runs, fansyncOnly: false, wan: { delayMs: wanDelayMs, mode: "defaults" } },
      ];

type PreparedTree = { plan: TreePlan; root: string; entries: TreeEntry[]; keysFile: string; bytes: number; twins: number };

/** Generates a tree on disk unless the same listing is already there (checked by digest). */
function prepareTree(plan: TreePlan): PreparedTree {
  const entries = planTree(plan.spec, seed);
  const root = join(workDir, "trees", plan.spec.name);
  const digestFile = `${root}.digest`;
  const digest = `${listingDigest(entries)} seed=${seed}`;
  if (!existsSync(digestFile) || readFileSync(digestFile, "utf8") !== digest) {
    log(`generating tree ${plan.spec.name}: ${entries.length.toLocaleString("en-US")} files`);
    rmSync(root, { recursive: true, force: true });
    rmSync(digestFile, { force: true });
    mkdirSync(root, { recursive: true });
    writeTree(root, entries, seed);
    writeFileSync(digestFile, digest);
  }
  const keysFile = `${root}.keys`;
  writeFileSync(keysFile, entries.map((e) => e.path).join("\n") + "\n");
  const nfc = new Map<string, number>();
  for (const e of entries) nfc.set(e.path.normalize("NFC"), (nfc.get(e.path.normalize("NFC")) ?? 0) + 1);
  const twins = [...nfc.values()].filter((n) => n > 1).reduce((a, b) => a + b, 0);
  return { plan, root, entries, keysFile, bytes: entries.reduce((a, e) => a + e.size, 0), twins };
}

// ---- rows -----------------------------------------------------------------------------------

const rows = new Map<string, Row>();
const benchStartedAt = new Date().toISOString();
const rowId = (key: string, toolId: string): string => `${key}\u0000${toolId}`;

function humanBytes(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : `${(n / MB).toFixed(0)} MiB`;
}

function scenarioTitle(step: StepKind, t: PreparedTree): string {
  const wan = t.plan.wan === undefined ? "" : `, WAN: +${t.plan.wan.delayMs} ms each way, ${t.plan.wan.mode === "equal" ? "equal concurrency" : "each tool's defaults"}`;
  const size = `${t.plan.spec.name} tree (${t.entries.length.toLocaleString("en-US")} files, ${humanBytes(t.bytes)})${wan}`;
  const only = t.plan.fansyncOnly ? ", fansync only (memory row)" : "";
  switch (step) {
    case "upload":
      return `Initial upload, ${size}${only}`;
    case "noop-push":
      return `No-op sync, master side (push), ${size}${only}`;
    case "download":
      return `Initial download, ${size}${only}`;
    case "noop-pull":
      return `No-op sync, node side (pull), ${size}${only}`;
    case "change-push":
      return `One file changed, master side (push), ${size}`;
    case "change-pull":
      return `One file changed, node side (pull), ${size}`;
  }
}

/** Row order in the report: by scenario, then tree, then tool. */
function createRows(trees: readonly PreparedTree[], tools: readonly Tool[]): void {
  const order: StepKind[] = ["upload", "noop-push", "noop-pull", "change-push", "change-pull", "download"];
  for (const step of order) {
    for (const t of trees) {
      if (!t.plan.steps.includes(step)) continue;
      const key = `${step}/${planName(t.plan)}`;
      for (const tool of tools) {
        if (t.plan.fansyncOnly && tool.id !== "fansync") continue;
        if (t.plan.wan !== undefined && !WAN_TOOLS.has(tool.id)) continue;
        if (!tool.incremental && step !== "upload" && step !== "download") continue;
        rows.set(rowId(key, tool.id), { key, scenario: scenarioTitle(step, t), toolId: tool.id, tool: tool.label, status: "ok", measuredAt: benchStartedAt, runs: [] });
      }
    }
  }
}

// ---- running one tool over one tree ------------------------------------------------------------

/** The file the one-file-changed step rewrites: a small file picked by the seed. */
function changedEntry(t: PreparedTree): TreeEntry {
  const small = t.entries.filter((e) => e.size <= 1 * MB);
  return small[hash32(`change/${seed}`) % small.length] as TreeEntry;
}

/**
 * One tool through a tree's steps against a fresh server, once. Failures mark the row and stop the
 * run. `order` is the tool's position in this round (the order rotates between rounds).
 */
async function runPipeline(tool: Tool, t: PreparedTree, runIndex: number, order: number): Promise<void> {
  const runDir = join(workDir, "runs", `${tool.id}-${planName(t.plan)}-${runIndex}`);
  toTrash(runDir);
  const scratch = join(runDir, "scratch");
  const nodeDir = join(runDir, "node");
  mkdirSync(scratch, { recursive: true });
  mkdirSync(nodeDir, { recursive: true });
  const logPath = join(outDir, "logs", `${tool.id}-${planName(t.plan)}-${runIndex}.log`);
  mkdirSync(dirname(logPath), { recursive: true });
  writeFileSync(logPath, "");
  const server = await startS3Server(serverKind, [BUCKET]);
  const proxy = await startCountingProxy(server.endpoint, undefined, t.plan.wan?.delayMs ?? 0);
  const ctx: ToolContext = {
    endpoint: proxy.endpoint, bucket: BUCKET, prefix: PREFIX, concurrency, scratch, keysFile: t.keysFile, env: baseEnv(),
    toolDefaults: t.plan.wan?.mode === "defaults",
  };
  const changed = changedEntry(t);
  let expected = t.entries;
  try {
    for (const step of t.plan.steps) {
      const key = `${step}/${planName(t.plan)}`;
      const row = rows.get(rowId(key, tool.id));
      if (row === undefined || row.status !== "ok") continue;
      if (step === "change-push") {
        // A bigger body and a fresh mtime: every tool's change detection (size, mtime or MD5) sees it.
        const next = { path: changed.path, size: changed.size + 100 };
        writeTreeFile(t.root, next, seed, 1, new Date());
        expected = t.entries.map((e) => (e.path === changed.path ? next : e));
      }
      const isPush = step === "upload" || step === "noop-push" || step === "change-push";
      const spec: CommandSpec | undefined = isPush ? tool.push(ctx, t.root) : tool.pull(ctx, nodeDir);
      if (spec === undefined) continue;
      const before = proxy.snapshot();
      const serverCpu0 = readCpuSeconds(server.pid);
      const selfCpu0 = process.cpuUsage();
      const out = await runMeasured(spec, logPath, stepTimeoutMs);
      const selfCpu = process.cpuUsage(selfCpu0);
      const serverCpu1 = readCpuSeconds(server.pid);
      const counts = diffCounts(proxy.snapshot(), before);
      const record: RunRecord = { wallMs: out.wallMs, requests: counts.requests, bytesUp: counts.bytesUp, bytesDown: counts.bytesDown, run: runIndex, order };
      if (out.rssKb !== undefined) record.rssKb = out.rssKb;
      if (out.cpuS !== undefined) record.cpuS = out.cpuS;
      if (serverCpu0 !== undefined && serverCpu1 !== undefined) record.serverCpuS = serverCpu1 - serverCpu0;
      record.proxyCpuS = (selfCpu.user + selfCpu.system) / 1e6;
      const total = Object.values(counts.requests).reduce((a, b) => a + b, 0);
      if (out.timedOut || out.exitCode !== 0) {
        row.status = "failed";
        const tail = out.tail.split("\n").slice(-3).join(" ").slice(0, 300);
        row.note = out.timedOut ? `timed out after ${stepTimeoutMs / 1000} s` : `exit ${out.exitCode}: ${tail} (log: ${logPath})`;
        log(`${key} ${tool.id} run ${runIndex + 1}: FAILED ${row.note}`);
        // Later steps depend on this one: say so on their rows rather than leave them blank.
        for (const later of t.plan.steps.slice(t.plan.steps.indexOf(step) + 1)) {
          const r = rows.get(rowId(`${later}/${planName(t.plan)}`, tool.id));
          if (r !== undefined && r.status === "ok" && r.runs.length === 0) {
            r.status = "failed";
            r.note = `not run: ${step} failed first`;
          }
        }
        break;
      }
      row.runs.push(record);
      let note = "";
      if (step === "noop-push" || step === "noop-pull") {
        note = describeNoopTransfers(step, counts.requests);
        if (note !== "" && row.note === undefined) row.note = note;
      }
      if (!isPush) {
        const check = describeCheck(compareListing(expected, readTreeSizes(nodeDir)));
        // Keep the first note seen over the runs: an incomplete download in any run must show.
        if (check !== "" && row.note === undefined) row.note = check;
        note = [note, check].filter((n) => n !== "").join(", ");
      }
      const cpu = `CPU ${out.cpuS?.toFixed(2) ?? "?"} s client, ${record.serverCpuS?.toFixed(2) ?? "?"} s server, ${record.proxyCpuS.toFixed(2)} s proxy`;
      log(`${key} ${tool.id} run ${runIndex + 1}: ${(out.wallMs / 1000).toFixed(2)} s, ${total} requests, ${out.rssKb === undefined ? "?" : Math.round(out.rssKb / 1024)} MiB, ${cpu}${note ? `, ${note}` : ""}`);
    }
  } finally {
    await proxy.close();
    await server.stop();
    // Put the master tree back exactly as generated, for the next tool.
    writeTreeFile(t.root, changed, seed, 0, TREE_MTIME);
    toTrash(runDir);
  }
}

/**
 * Where each run's files go when it ends, deleted only when the bench is done: on an ext4 without a
 * journal (this machine's disk), a file created within 1 to 6 minutes of a mass deletion costs the
 * kernel a scan of the freed inodes (ext4's recently_deleted; perf put a quarter of a 10k pull's
 * samples there), so deleting one tool's 10k-file tree right before the next tool's pull charged
 * that tool for the bench's own rm -rf.
 */
const trashDir = join(workDir, "trash");

function toTrash(dir: string): void {
  if (!existsSync(dir)) return;
  mkdirSync(trashDir, { recursive: true });
  renameSync(dir, join(trashDir, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`));
}

/**
 * A no-op sync should move no object. Transfers in a no-op step are worth a note (fauxqs's listing
 * order makes some peers re-send NFD-named keys on every run). One GET is allowed on the pull side:
 * fansync's conditional GET of its manifest.
 */
function describeNoopTransfers(step: StepKind, requests: Record<string, number>): string {
  const moved =
    step === "noop-push"
      ? (["PUT", "POST", "DELETE"] as const).filter((k) => (requests[k] ?? 0) > 0)
      : (["GET", "DELETE"] as const).filter((k) => (requests[k] ?? 0) > (k === "GET" ? 1 : 0));
  if (moved.length === 0) return "";
  return `not a no-op: ${moved.map((k) => `${requests[k]} ${k}`).join(" + ")}`;
}

// ---- start-up ------------------------------------------------------------------------------------

/** Start-up cost: an empty Node, fansync --version, and each peer's version command. */
async function runStartup(tools: readonly Tool[], fansyncOk: boolean): Promise<void> {
  const env = baseEnv();
  const cases: { id: string; label: string; spec: CommandSpec | undefined; reason?: string }[] = [
    { id: "node", label: "node -e 0", spec: { cmd: process.execPath, args: ["-e", "0"], env } },
    {
      id: "fansync",
      label: "fansync --version",
      spec: fansyncOk ? { cmd: join(fansyncRepo, "bin/fansync.js"), args: ["--version"], env } : undefined,
      reason: "not built",
    },
    { id: "rclone", label: "rclone version", spec: { cmd: "rclone", args: ["version"], env } },
    { id: "aws", label: "aws --version", spec: { cmd: "/usr/bin/aws", args: ["--version"], env } },
    { id: "s3cmd", label: "s3cmd --version", spec: { cmd: "s3cmd", args: ["--version"], env } },
  ];
  const logPath = join(outDir, "logs", "startup.log");
  mkdirSync(dirname(logPath), { recursive: true });
  for (const c of cases) {
    if (c.id !== "node" && onlyTools !== undefined && !onlyTools.includes(c.id)) continue;
    const peer = tools.find((t) => t.id === c.id);
    const avail = peer?.check();
    const row: Row = { key: "startup", scenario: "Start-up alone (wall time and peak RSS of one trivial invocation)", toolId: c.id, tool: c.label, status: "ok", measuredAt: benchStartedAt, runs: [] };
    rows.set(rowId("startup", c.id), row);
    if (c.spec === undefined || (avail !== undefined && !avail.ok)) {
      row.status = c.id === "fansync" ? "not built" : "missing";
      row.note = avail !== undefined && !avail.ok ? avail.reason : (c.reason ?? "");
      continue;
    }
    for (let i = 0; i < startupRuns; i++) {
      const out = await runMeasured(c.spec, logPath, 60_000);
      if (out.exitCode !== 0) {
        row.status = "failed";
        row.note = `exit ${out.exitCode}`;
        break;
      }
      const r: RunRecord = { wallMs: out.wallMs, requests: {}, bytesUp: 0, bytesDown: 0, run: i };
      if (out.rssKb !== undefined) r.rssKb = out.rssKb;
      if (out.cpuS !== undefined) r.cpuS = out.cpuS;
      row.runs.push(r);
    }
    log(`startup ${c.label}: ${row.runs.length} runs`);
  }
}

/**
 * Steps to run given BENCH_SCENARIOS (names like "noop", "noop-pull", "download"): a selected step
 * brings its prerequisites along, since a no-op pull means nothing without the upload and download.
 */
function stepsNeeded(available: readonly StepKind[]): Set<StepKind> {
  const chosen = new Set<StepKind>();
  for (const step of available) {
    const family = step.replace(/-(push|pull)$/, "");
    if (onlyScenarios === undefined || onlyScenarios.includes(step) || onlyScenarios.includes(family)) chosen.add(step);
  }
  const pullSide = (["download", "noop-pull", "change-pull"] as const).some((s) => chosen.has(s));
  if (pullSide || chosen.size > 0) chosen.add("upload");
  if (pullSide) chosen.add("download");
  if (chosen.has("change-pull")) chosen.add("change-push");
  return new Set(available.filter((s) => chosen.has(s)));
}

// ---- main -----------------------------------------------------------------------------------------

/** Builds fansync in FANSYNC_REPO; returns a "not built" reason or undefined. */
function buildFansync(): string | undefined {
  if (process.env.BENCH_SKIP_BUILD === "1") return undefined;
  if (!existsSync(join(fansyncRepo, "package.json"))) return `FANSYNC_REPO ${fansyncRepo} has no package.json`;
  log(`building fansync in ${fansyncRepo} (npm run build)`);
  const r = spawnSync("npm", ["run", "build"], { cwd: fansyncRepo, encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) return `npm run build failed in ${fansyncRepo}: ${`${r.stdout}${r.stderr}`.trim().split("\n").slice(-2).join(" ").slice(0, 200)}`;
  return undefined;
}

function sdkVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(benchRepo, "node_modules/@aws-sdk/client-s3/package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

function gitRev(dir: string): string {
  const r = spawnSync("git", ["-C", dir, "rev-parse", "--short", "HEAD"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "?";
}

async function main(): Promise<void> {
  const startedAt = benchStartedAt;
  const loadAvgStart = loadavg();
  mkdirSync(outDir, { recursive: true });
  mkdirSync(workDir, { recursive: true });
  log(`scale=${scale} runs=${runs} server=${serverKind} concurrency=${concurrency} workdir=${workDir} fansync=${fansyncRepo}`);

  const buildNote = buildFansync();
  const allTools: Tool[] = [
    fansyncTool(fansyncRepo, buildNote),
    rcloneTool(false),
    rcloneTool(true),
    awsTool(),
    s3cmdTool(),
    sdkLoopTool(join(benchDir, "lib/sdk-loop.ts"), sdkVersion(), true),
    sdkLoopTool(join(benchDir, "lib/sdk-loop.ts"), sdkVersion(), false),
    httpLoopTool(join(benchDir, "lib/http-loop.ts")),
  ];
  const tools = onlyTools === undefined ? allTools : allTools.filter((t) => onlyTools.includes(t.id));
  const availability = new Map(tools.map((t) => [t.id, t.check()] as const));
  const versions: Record<string, string> = { node: process.version };
  for (const t of allTools) {
    const a = availability.get(t.id) ?? t.check();
    if (t.id === "rclone-fast-list" || t.id === "sdk-loop-nocrc") continue;
    versions[t.id === "sdk-loop" ? "SDK loop" : t.id === "http-loop" ? "node:http loop" : t.label] = a.ok ? a.version : `${t.id === "fansync" ? "not built" : "missing"}: ${a.reason}`;
  }
  versions["fansync repo"] = `${fansyncRepo} @ ${gitRev(fansyncRepo)}`;

  const plans = treePlans
    .map((p) => {
      const need = stepsNeeded(p.steps);
      return { ...p, steps: p.steps.filter((s) => need.has(s)) };
    })
    .filter((p) => p.steps.length > 0 && (onlyTrees === undefined || onlyTrees.includes(planName(p))));
  const trees = plans.map(prepareTree);
  createRows(trees, tools);

  for (const t of tools) {
    const a = availability.get(t.id);
    if (a === undefined || a.ok) continue;
    for (const row of rows.values()) {
      if (row.toolId !== t.id) continue;
      row.status = t.id === "fansync" ? "not built" : "missing";
      row.note = a.reason;
    }
  }

  // Round by round: every tool once per round, in an order rotated by one place each round (and
  // per tree), so no tool always runs first or last on a machine that warms up or gets busier;
  // the records of one round are paired for the ratios at the top of the report.
  for (const [ti, t] of trees.entries()) {
    const runnable = tools.filter(
      (tool) => (!t.plan.fansyncOnly || tool.id === "fansync") && (t.plan.wan === undefined || WAN_TOOLS.has(tool.id)) && availability.get(tool.id)?.ok === true,
    );
    for (let i = 0; i < t.plan.runs; i++) {
      const shift = runnable.length === 0 ? 0 : (i + ti) % runnable.length;
      const order = [...runnable.slice(shift), ...runnable.slice(0, shift)];
      for (const [pos, tool] of order.entries()) {
        log(`== ${tool.id} on ${planName(t.plan)}, run ${i + 1}/${t.plan.runs} (position ${pos + 1} of ${order.length})`);
        await runPipeline(tool, t, i, pos);
      }
    }
  }

  const fansyncOk = availability.get("fansync")?.ok === true;
  let propagation: Propagation = { status: "n/a", note: "not selected (BENCH_SCENARIOS)", samplesMs: [], files: 0, lost: 0, delayMs: 100, intervalMs: 200 };
  if (onlyScenarios === undefined || onlyScenarios.includes("propagation")) {
    if (!fansyncOk || !tools.some((t) => t.id === "fansync")) {
      const a = availability.get("fansync");
      propagation = { ...propagation, status: "not built", note: a !== undefined && !a.ok ? a.reason : "fansync not selected" };
    } else {
      propagation = await runPropagation({
        repo: fansyncRepo,
        workDir: join(workDir, "runs", "propagation"),
        serverKind,
        bucket: BUCKET,
        prefix: PREFIX,
        seed,
        files: 50,
        env: baseEnv(),
        logPath: join(outDir, "logs", "propagation.log"),
        log,
      });
    }
  }
  // Two-way (issue 17): a change on one `sync` node until the two others serve it, beside the
  // master → node row. On moto whatever BENCH_SERVER says: sync needs conditional writes.
  let syncPropagation: SyncPropagation | undefined;
  if ((onlyScenarios === undefined || onlyScenarios.includes("sync-propagation")) && fansyncOk && tools.some((t) => t.id === "fansync")) {
    syncPropagation = await runSyncPropagation({
      repo: fansyncRepo,
      workDir: join(workDir, "runs", "sync-propagation"),
      bucket: BUCKET,
      prefix: PREFIX,
      seed,
      files: scale === "full" ? 30 : 10,
      env: baseEnv(),
      logPath: join(outDir, "logs", "sync-propagation.log"),
      log,
    });
  }
  // Interrupted work (issue 27): a push and a pull killed at half, then rerun: bytes sent vs the remainder.
  let interrupted: Interrupted | undefined;
  if ((onlyScenarios === undefined || onlyScenarios.includes("interrupted")) && fansyncOk && tools.some((t) => t.id === "fansync")) {
    interrupted = await runInterrupted({
      repo: fansyncRepo,
      workDir: join(workDir, "runs", "interrupted"),
      serverKind,
      bucket: BUCKET,
      prefix: PREFIX,
      seed,
      files: scale === "full" ? 10_000 : 1000,
      env: baseEnv(),
      logPath: join(outDir, "logs", "interrupted.log"),
      log,
    });
  }
  if (onlyScenarios === undefined || onlyScenarios.includes("startup")) await runStartup(tools, fansyncOk);
  // The fleet polling, then (fleet-events) the same fleet woken by events.
  const fleetRun = (events: boolean) => runFleet({
    ...fleetSettingsFromEnv(scale),
    repo: fansyncRepo,
    workDir: join(workDir, "runs", events ? "fleet-events" : "fleet"),
    serverKind,
    serverLabel: serverVersion(serverKind, benchRepo),
    bucket: BUCKET,
    prefix: PREFIX,
    seed,
    env: baseEnv(),
    logPath: join(outDir, "logs", events ? "fleet-events.log" : "fleet.log"),
    log,
    fansyncOk,
    events,
  });
  let fleet: FleetResult | undefined;
  if (onlyScenarios === undefined || onlyScenarios.includes("fleet")) fleet = await fleetRun(false);
  let fleetEvents: FleetResult | undefined;
  if (onlyScenarios === undefined || onlyScenarios.includes("fleet-events")) fleetEvents = await fleetRun(true);

  // Events vs polling (issue 24): on moto whatever BENCH_SERVER says (S3 → SNS → SQS in one server).
  let events: EventsResult | undefined;
  if ((onlyScenarios === undefined || onlyScenarios.includes("events")) && fansyncOk && tools.some((t) => t.id === "fansync")) {
    events = await runEventsBench({ ...eventsSettingsFromEnv(scale), repo: fansyncRepo, workDir: join(workDir, "runs", "events"), env: baseEnv(), log });
  }

  const report: BenchReport = {
    scale,
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: {
      nproc: availableParallelism(),
      memoryGiB: totalmem() / 1024 ** 3,
      kernel: release(),
      cpu: cpus()[0]?.model ?? "?",
      loadAvgStart,
      loadAvgEnd: loadavg(),
    },
    versions,
    settings: {
      runs,
      hugeRuns,
      concurrency,
      server: `${serverVersion(serverKind, benchRepo)}, in its own child process, fresh for every tool run`,
      seed,
      unicode,
      rssMethod: GNU_TIME === undefined ? "not measured (install the Debian package `time`)" : "GNU time -f %M (ru_maxrss of the child); daemons: /proc/PID/status VmHWM",
    },
    // One entry per tree on disk: the WAN plans reuse their tree under a longer row name.
    trees: trees.filter((t) => t.plan.wan === undefined).map((t) => ({ name: t.plan.spec.name, files: t.entries.length, bytes: t.bytes, twins: t.twins })),
    rows: [...rows.values()],
    propagation,
    ...(syncPropagation !== undefined ? { syncPropagation } : {}),
    ...(interrupted !== undefined ? { interrupted } : {}),
    ...(fleet !== undefined ? { fleet } : {}),
    ...(fleetEvents !== undefined ? { fleetEvents } : {}),
    ...(events !== undefined ? { events } : {}),
  };
  const merged = mergeInto(report);
  writeFileSync(resultsJson, JSON.stringify(merged, null, 2));
  await writeOutputs(merged);
  // Every measurement is done: the runs' files can go now (see toTrash).
  log(`deleting ${trashDir}`);
  rmSync(trashDir, { recursive: true, force: true });
}

/**
 * BENCH_MERGE_INTO=<results.json of an earlier run>: this run's rows replace the rows of the same
 * scenario and tool there, and everything else is kept (rerun one tool or tree without rerunning
 * all the peers). The report says both start times.
 */
function mergeInto(report: BenchReport): BenchReport {
  const base = process.env.BENCH_MERGE_INTO;
  if (!base) return report;
  const earlier = JSON.parse(readFileSync(base, "utf8")) as BenchReport;
  const id = (r: { key: string; toolId: string }) => `${r.key}\u0000${r.toolId}`;
  const fresh = new Map(report.rows.map((r) => [id(r), r]));
  const rows = earlier.rows.map((r) => fresh.get(id(r)) ?? r);
  for (const r of report.rows) if (!earlier.rows.some((e) => id(e) === id(r))) rows.push(r);
  // Rows of the earlier run keep their own start time, so the paired ratios know what ran together.
  for (const r of rows) r.measuredAt ??= earlier.startedAt.split(" ")[0];
  log(`merged ${report.rows.length} rows into ${base}`);
  const fleet = report.fleet ?? earlier.fleet;
  const fleetEvents = report.fleetEvents ?? earlier.fleetEvents;
  // A propagation run that was not selected this time keeps the earlier figures.
  const propagation = report.propagation.status === "n/a" ? earlier.propagation : report.propagation;
  const syncPropagation = report.syncPropagation ?? earlier.syncPropagation;
  const events = report.events ?? earlier.events;
  const interrupted = report.interrupted ?? earlier.interrupted;
  // The trees of both invocations: a re-measured tree's facts replace the earlier ones.
  const trees = [...earlier.trees.filter((t) => !report.trees.some((n) => n.name === t.name)), ...report.trees];
  return { ...earlier, trees, rows, propagation, ...(syncPropagation !== undefined ? { syncPropagation } : {}), ...(interrupted !== undefined ? { interrupted } : {}), ...(fleet !== undefined ? { fleet } : {}), ...(fleetEvents !== undefined ? { fleetEvents } : {}), ...(events !== undefined ? { events } : {}), finishedAt: report.finishedAt, startedAt: `${earlier.startedAt} (rows re-measured ${report.startedAt})` };
}

/** RESULTS.md and the chart, from a report (fresh, or re-read by `--render`). */
async function writeOutputs(report: BenchReport): Promise<void> {
  await writeChart(report, chartPng, join(outDir, "results.svg"));
  writeFileSync(resultsMd, renderReport(report, basename(chartPng)));
  log(`wrote ${resultsMd} and ${chartPng}`);
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping the tool runs in flight`);
    killActiveRuns();
    process.exit(130);
  });
}

if (process.argv.includes("--render")) {
  // Re-render from the last run's raw figures, without measuring anything.
  await writeOutputs(JSON.parse(readFileSync(resultsJson, "utf8")) as BenchReport);
} else {
  await main();
}
