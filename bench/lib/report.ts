// Renders a BenchReport as markdown. Pure: strings in, string out.
import { summarize, ratio, median } from "./stats.ts";
import type { BenchReport, FleetResult, Row, RunRecord } from "./results.ts";
import type { Interrupted } from "./interrupted.ts";
import { percentile } from "./stats.ts";
import type { EventsResult } from "./events-bench.ts";
import { cdnHeadMonth, fleetUnits, MONTH_S, NOT_MODIFIED_BYTES, nodeMonth, PRICES, prefixLimitNodes } from "./cost.ts";

/** Escapes a table cell: pipes would split the cell, newlines would end the row. */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/** A GitHub-flavoured markdown table; `align` is "l" or "r" per column (default left). */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly ("l" | "r")[] = []): string {
  const head = `| ${headers.map(cell).join(" | ")} |`;
  const sep = `|${headers.map((_, i) => (align[i] === "r" ? "---:" : "---")).join("|")}|`;
  const body = rows.map((r) => `| ${headers.map((_, i) => cell(r[i] ?? "")).join(" | ")} |`);
  return [head, sep, ...body].join("\n");
}

/** Fixed-point with a sensible number of digits for the magnitude. */
export function formatNumber(x: number): string {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  // Two significant digits for tiny ratios (one request against thousands), not "0.000".
  if (a > 0 && a < 0.01) return x.toPrecision(2);
  return x.toFixed(3);
}

/** "median (min–max)", or just the value for a single run; "—" for no data. */
export function formatSummary(xs: readonly number[]): string {
  if (xs.length === 0) return "—";
  const s = summarize(xs);
  if (s.n === 1 || s.min === s.max) return formatNumber(s.median);
  return `${formatNumber(s.median)} (${formatNumber(s.min)}–${formatNumber(s.max)})`;
}

/** "0.52×", or "—" when the ratio is undefined. */
export function formatRatio(r: number | undefined): string {
  return r === undefined ? "—" : `${formatNumber(r)}×`;
}

/** Integer with thousands separators. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Median request count per kind over runs, largest first: "10,000 PUT + 2 LIST". */
export function formatRequests(runs: readonly RunRecord[]): string {
  if (runs.length === 0) return "—";
  const kinds = new Set(runs.flatMap((r) => Object.keys(r.requests)));
  const parts = [...kinds]
    .map((k) => ({ k, n: median(runs.map((r) => r.requests[k] ?? 0)) }))
    .filter((p) => p.n > 0)
    .sort((a, b) => b.n - a.n);
  if (parts.length === 0) return "0";
  const total = median(runs.map((r) => Object.values(r.requests).reduce((a, b) => a + b, 0)));
  const detail = parts.map((p) => `${formatCount(p.n)} ${p.k}`).join(" + ");
  return parts.length === 1 ? detail : `${formatCount(total)}: ${detail}`;
}

/** Median wall time in seconds of a row with data, else undefined. */
export function medianSeconds(row: Row | undefined): number | undefined {
  if (row === undefined || row.status !== "ok" || row.runs.length === 0) return undefined;
  return median(row.runs.map((r) => r.wallMs / 1000));
}

/** Median total requests of a row with data. */
export function medianRequests(row: Row | undefined): number | undefined {
  if (row === undefined || row.status !== "ok" || row.runs.length === 0) return undefined;
  return median(row.runs.map((r) => Object.values(r.requests).reduce((a, b) => a + b, 0)));
}

/** Median peak RSS in MiB of a row with RSS data. */
export function medianRssMiB(row: Row | undefined): number | undefined {
  if (row === undefined || row.status !== "ok") return undefined;
  const xs = row.runs.flatMap((r) => (r.rssKb === undefined ? [] : [r.rssKb / 1024]));
  return xs.length === 0 ? undefined : median(xs);
}

/** Total requests of one run. */
const totalOf = (r: RunRecord): number => Object.values(r.requests).reduce((a, b) => a + b, 0);

/** Median CPU seconds of one side ("cpuS" client, "serverCpuS", "proxyCpuS") over the runs that have it. */
export function medianCpu(row: Row | undefined, side: "cpuS" | "serverCpuS" | "proxyCpuS"): number | undefined {
  if (row === undefined || row.status !== "ok") return undefined;
  const xs = row.runs.flatMap((r) => (r[side] === undefined ? [] : [r[side]]));
  return xs.length === 0 ? undefined : median(xs);
}

/** Median CPU seconds per 1,000 requests of one side, run by run (undefined without CPU data or requests). */
export function cpuPer1k(row: Row | undefined, side: "cpuS" | "serverCpuS" | "proxyCpuS"): number | undefined {
  if (row === undefined || row.status !== "ok") return undefined;
  const xs = row.runs.flatMap((r) => {
    const v = r[side];
    const n = totalOf(r);
    return v === undefined || n === 0 ? [] : [(1000 * v) / n];
  });
  return xs.length === 0 ? undefined : median(xs);
}

/** Rows grouped by scenario key, in first-seen order. */
export function groupByKey(rows: readonly Row[]): Map<string, Row[]> {
  const m = new Map<string, Row[]>();
  for (const r of rows) {
    const list = m.get(r.key) ?? [];
    list.push(r);
    m.set(r.key, list);
  }
  return m;
}

/** A number, or "—" when there is none. */
const optNum = (x: number | undefined): string => (x === undefined ? "—" : formatNumber(x));

/** The table of one scenario: one row per tool, ratios against the fansync row. */
export function scenarioTable(rows: readonly Row[]): string {
  const fan = rows.find((r) => r.toolId === "fansync");
  const fT = medianSeconds(fan);
  const fQ = medianRequests(fan);
  const fM = medianRssMiB(fan);
  const body = rows.map((r) => {
    const ok = r.status === "ok";
    const status = ok ? (r.note ?? "") : `${r.status}${r.note ? `: ${r.note}` : ""}`;
    const isFan = r.toolId === "fansync";
    return [
      r.tool,
      ok ? formatSummary(r.runs.map((x) => x.wallMs / 1000)) : "—",
      ok ? formatRequests(r.runs) : "—",
      ok ? formatSummary(r.runs.flatMap((x) => (x.rssKb === undefined ? [] : [x.rssKb / 1024]))) : "—",
      isFan ? "" : formatRatio(ratio(fT, medianSeconds(r))),
      isFan ? "" : formatRatio(ratio(fQ, medianRequests(r))),
      isFan ? "" : formatRatio(ratio(fM, medianRssMiB(r))),
      ok ? `${optNum(medianCpu(r, "cpuS"))} / ${optNum(medianCpu(r, "serverCpuS"))}` : "—",
      ok ? `${optNum(cpuPer1k(r, "cpuS"))} / ${optNum(cpuPer1k(r, "serverCpuS"))}` : "—",
      status,
    ];
  });
  return formatTable(
    ["tool", "time s, median (min–max)", "requests (median)", "peak RSS MiB", "fansync/tool time", "fansync/tool requests", "fansync/tool RSS", "CPU s client / server", "CPU s per 1k req client / server", "note"],
    body,
    ["l", "r", "r", "r", "r", "r", "r", "r", "r", "l"],
  );
}

/**
 * "Where fansync loses and why", generated from the figures: every peer row that fansync trails by
 * more than 10% in time or memory, or sends fewer requests, with the measured hints at the cause.
 */
export function losses(report: BenchReport): string[] {
  const out: string[] = [];
  const startup = report.rows.find((r) => r.key === "startup" && r.toolId === "fansync");
  const startupS = medianSeconds(startup);
  const nodeRss = medianRssMiB(report.rows.find((r) => r.key === "startup" && r.toolId === "node"));
  for (const [key, rows] of groupByKey(report.rows)) {
    if (key === "startup") continue;
    const fan = rows.find((r) => r.toolId === "fansync");
    const fT = medianSeconds(fan);
    if (fan === undefined || fT === undefined) continue;
    for (const r of rows) {
      if (r.toolId === "fansync") continue;
      const t = medianSeconds(r);
      const tr = ratio(fT, t);
      const qr = ratio(medianRequests(fan), medianRequests(r));
      const mr = ratio(medianRssMiB(fan), medianRssMiB(r));
      const why: string[] = [];
      if (tr !== undefined && tr > 1.1) {
        const ceiling = r.toolId.startsWith("sdk-loop") || r.toolId === "http-loop" ? " (a bare loop: no listing, no comparison, no state)" : "";
        why.push(`takes ${formatNumber(tr)}× the time (${formatNumber(fT)} s vs ${formatNumber(t ?? 0)} s)${ceiling}`);
        if (qr !== undefined) why.push(`sends ${formatNumber(qr)}× the requests (${formatRequests(fan.runs)} vs ${formatRequests(r.runs)})`);
        const cpu = cpuExplanation(fan, r, rows, report.machine.nproc);
        if (cpu !== undefined) why.push(cpu);
        if (startupS !== undefined && fT > 0) {
          why.push(`start-up alone (\`fansync --version\`) is ${formatNumber(startupS)} s, ${formatNumber((100 * startupS) / fT)}% of this run`);
        }
      } else if (qr !== undefined && qr > 1.1) {
        why.push(`sends ${formatNumber(qr)}× the requests (${formatRequests(fan.runs)} vs ${formatRequests(r.runs)}) though not slower`);
      }
      if (mr !== undefined && mr > 1.1) {
        const base = nodeRss !== undefined ? `; an empty Node process is ${formatNumber(nodeRss)} MiB` : "";
        why.push(`uses ${formatNumber(mr)}× the peak memory (${formatNumber(medianRssMiB(fan) ?? 0)} MiB vs ${formatNumber(medianRssMiB(r) ?? 0)} MiB${base})`);
      }
      if (why.length > 0) out.push(`- **${rows[0]?.scenario ?? key}**, vs ${r.tool}: fansync ${why.join("; ")}.`);
    }
  }
  return out;
}

/**
 * Where the time of a slower fansync run goes, from the measured CPU seconds per 1,000 requests
 * (client, server) rather than asserted: whether fansync's client spends more CPU per request than
 * the peer, how much of that the bare SDK loop (no checksums, as fansync) and the bare node:http
 * loop of the same scenario spend too, and how busy the machine's cores were. Undefined without
 * CPU figures (results recorded before they were measured).
 */
export function cpuExplanation(fan: Row, peer: Row, scenarioRows: readonly Row[], nproc: number): string | undefined {
  const cF = cpuPer1k(fan, "cpuS");
  const cP = cpuPer1k(peer, "cpuS");
  if (cF === undefined || cP === undefined) return undefined;
  const parts: string[] = [`client CPU ${formatNumber(cF)} s per 1,000 requests vs ${formatNumber(cP)} s`];
  const sF = cpuPer1k(fan, "serverCpuS");
  const sP = cpuPer1k(peer, "serverCpuS");
  if (sF !== undefined && sP !== undefined) parts.push(`server ${formatNumber(sF)} vs ${formatNumber(sP)}`);
  let text = parts.join(", ");
  const cr = cF / cP;
  if (cr > 1.2) {
    text += `: the client spends ${formatNumber(cr)}× the CPU per request`;
    const sdk = scenarioRows.find((x) => x.toolId === "sdk-loop-nocrc");
    const raw = scenarioRows.find((x) => x.toolId === "http-loop");
    const cS = cpuPer1k(sdk, "cpuS");
    const cR = cpuPer1k(raw, "cpuS");
    const peerIsLoop = peer.toolId.startsWith("sdk-loop") || peer.toolId === "http-loop";
    if (cS !== undefined && cR !== undefined && !peerIsLoop) {
      text += `; a bare SDK loop without checksums spends ${formatNumber(cS)} and a bare node:http loop with the same signed requests ${formatNumber(cR)}, so about ${formatNumber(Math.max(0, cS - cR))} s per 1,000 requests is the SDK's per-call cost and ${formatNumber(Math.max(0, cF - cS))} s is fansync's own work above a bare SDK loop`;
    }
  } else if (cr < 0.83) {
    text += ": the client spends less CPU per request than the peer, so the gap is waiting (concurrency, latency) or the server, not the client's CPU";
  } else {
    text += ": about the same client CPU per request, so the gap is not the client's CPU";
  }
  // Were the cores saturated? All CPU of the run (client, server, proxy) against wall × cores.
  const wall = medianSeconds(fan);
  const all = (medianCpu(fan, "cpuS") ?? 0) + (medianCpu(fan, "serverCpuS") ?? 0) + (medianCpu(fan, "proxyCpuS") ?? 0);
  if (wall !== undefined && wall > 0 && all > 0) text += ` (client + server + proxy used ${formatNumber(all)} CPU s in ${formatNumber(wall)} s on ${nproc} cores: ${formatNumber((100 * all) / (wall * nproc))}% of what the machine could give; the rest went to other processes or was not used — see the load average)`;
  return text;
}

/**
 * The paired ratios at the top: fansync's time ÷ a peer's, computed within each round (records with
 * the same run index, measured by the same bench invocation, in rotated order), then median and
 * range over the rounds. Rows measured by different invocations (merged) are not paired: the ratio
 * of medians is given and says so.
 */
export function pairedRatios(fan: Row | undefined, peer: Row | undefined): { median: number; min: number; max: number; n: number; paired: boolean } | undefined {
  if (fan === undefined || peer === undefined || fan.status !== "ok" || peer.status !== "ok") return undefined;
  const sameRun = fan.measuredAt !== undefined && fan.measuredAt === peer.measuredAt;
  const xs: number[] = [];
  if (sameRun) {
    for (const f of fan.runs) {
      const p = f.run === undefined ? undefined : peer.runs.find((x) => x.run === f.run);
      if (p !== undefined && p.wallMs > 0) xs.push(f.wallMs / p.wallMs);
    }
  }
  if (xs.length > 0) {
    const sm = summarize(xs);
    return { median: sm.median, min: sm.min, max: sm.max, n: xs.length, paired: true };
  }
  const r = ratio(medianSeconds(fan), medianSeconds(peer));
  return r === undefined ? undefined : { median: r, min: r, max: r, n: 0, paired: false };
}

/** The goals of issue 25 (fansync ÷ rclone time), by scenario key. */
const GOALS: Record<string, number> = { "upload/10k": 0.7, "upload/100k": 0.7, "download/10k": 1.0, "download/100k": 0.7 };
/** Peak RSS goals of issue 25 by tree, push and pull alike. */
const RSS_GOALS_MIB: Record<string, number> = { "10k": 150, "100k": 200 };
/**
 * A 1-minute load average at or above this when the run started means another process had the
 * cores: a busy machine takes rclone's second core away and hides the difference, so no goal is
 * judged from such a run.
 */
export const BUSY_LOAD = 1;

/**
 * Whether a measured figure meets its goal (lower is better), or that the run cannot say: a goal is
 * never marked met from a machine that was busy when the run started.
 */
export function goalVerdict(value: number, goal: number, loadAtStart: number | undefined): string {
  if (loadAtStart !== undefined && loadAtStart >= BUSY_LOAD) return `not comparable: machine busy (load ${formatNumber(loadAtStart)} at start)`;
  return value <= goal ? "met" : `not met (${formatNumber(value / goal)}× the goal)`;
}

/** The summary table: initial push and pull, fansync ÷ rclone per round, against the goals. */
export function pairedSummary(report: BenchReport): string {
  const load = report.machine.loadAvgStart[0];
  const body: string[][] = [];
  // Every tree (WAN variants included) that rclone was measured on.
  const siteTrees = [...new Set(report.rows.filter((r) => r.toolId === "rclone" && r.key.startsWith("upload/")).map((r) => r.key.slice("upload/".length)))].map((name) => ({ name }));
  for (const step of ["upload", "download"] as const) {
    for (const t of siteTrees) {
      const key = `${step}/${t.name}`;
      const fan = report.rows.find((r) => r.key === key && r.toolId === "fansync");
      for (const peerId of ["rclone", "rclone-fast-list"]) {
        const peer = report.rows.find((r) => r.key === key && r.toolId === peerId);
        if (peer === undefined) continue;
        const p = pairedRatios(fan, peer);
        const goal = peerId === "rclone" ? GOALS[key] : undefined;
        const fig = p === undefined ? `— (${fan?.status ?? "not run"} / ${peer.status})` : p.paired ? `${formatSummary(p.n > 1 ? [p.min, p.median, p.max] : [p.median])}× (${p.n} paired)` : `${formatNumber(p.median)}× (ratio of medians: rows from different runs)`;
        body.push([
          `${step === "upload" ? "initial push" : "initial pull"}, ${t.name}`,
          peer.tool,
          fig,
          goal === undefined ? "" : `≤ ${formatNumber(goal)}×`,
          goal === undefined || p === undefined ? "" : goalVerdict(p.median, goal, load),
        ]);
      }
    }
  }
  const rssRows: string[][] = [];
  for (const t of report.trees) {
    const rssGoal = RSS_GOALS_MIB[t.name];
    if (rssGoal === undefined) continue;
    for (const step of ["upload", "download"] as const) {
      const m = medianRssMiB(report.rows.find((r) => r.key === `${step}/${t.name}` && r.toolId === "fansync"));
      // Memory does not depend on the machine's load: judged whatever the load.
      rssRows.push([`peak RSS, ${step === "upload" ? "initial push" : "initial pull"}, ${t.name}`, "—", m === undefined ? "—" : `${formatNumber(m)} MiB`, `≤ ${rssGoal} MiB`, m === undefined ? "" : goalVerdict(m, rssGoal, undefined)]);
    }
  }
  if (body.length === 0 && rssRows.length === 0) return "_No initial push or pull measured with rclone in this run._";
  return formatTable(["what", "vs", "fansync ÷ peer time, median (min–max) over rounds", "goal", "status"], [...body, ...rssRows], ["l", "l", "r", "r", "l"]);
}

/** Bulk transfers: CPU seconds per 1,000 requests of every tool, client and server (and the proxy). */
export function cpuTable(report: BenchReport): string {
  const body: string[][] = [];
  for (const [key, rows] of groupByKey(report.rows)) {
    if (!/^(upload|download)\//.test(key)) continue;
    for (const r of rows) {
      if (r.status !== "ok" || cpuPer1k(r, "cpuS") === undefined) continue;
      body.push([
        key,
        r.tool,
        formatCount(medianRequests(r) ?? 0),
        optNum(medianSeconds(r)),
        optNum(cpuPer1k(r, "cpuS")),
        optNum(cpuPer1k(r, "serverCpuS")),
        optNum(cpuPer1k(r, "proxyCpuS")),
      ]);
    }
  }
  if (body.length === 0) return "_No CPU figures in these results (recorded before CPU was measured)._";
  return formatTable(["scenario", "tool", "requests", "time s", "client CPU s / 1k req", "server CPU s / 1k req", "proxy CPU s / 1k req"], body, ["l", "l", "r", "r", "r", "r", "r"]);
}

const usd = (x: number): string => (x >= 100 ? `$${formatCount(x)}` : x >= 1 ? `$${x.toFixed(2)}` : `$${x.toPrecision(2)}`);
const kilo = (x: number): string => (x >= 1e9 ? `${formatNumber(x / 1e9)}B` : x >= 1e6 ? `${formatNumber(x / 1e6)}M` : x >= 1e3 ? `${formatNumber(x / 1e3)}k` : formatNumber(x));

/** The simulated fleet's section: what it ran and what each node cost. */
export function fleetSection(f: FleetResult | undefined): string {
  if (f === undefined) return "_Not run (BENCH_SCENARIOS without `fleet`)._";
  if (f.status !== "ok") return `_${f.status}${f.note ? `: ${f.note}` : ""}_`;
  const u = fleetUnits(f);
  if (u === undefined) return "_No measured window._";
  const lines: string[] = [];
  const p = (xs: number[], q: number): string => (xs.length === 0 ? "—" : formatCount(percentile(xs, q)));
  lines.push(
    `${formatCount(f.nodes)} pullers (\`pull --watch --interval ${f.intervalMs}ms\`, the real command in ${f.workers} processes, each node with its own ${f.baseFiles}-file docroot, state and S3 client) against ${f.server} through the counting proxy; the master (\`watch --delay 100ms\`, its own proxy) published one new 2–8 KB file every ${formatNumber(f.publishEveryMs / 1000)} s: ${f.publishes} changes in ${formatNumber(f.durationMs / 1000)} s of measurement, which started once every node held the base tree.`,
  );
  lines.push("");
  lines.push(
    formatTable(
      ["nodes", "head GET req/s (all nodes)", "requests / node / hour", "propagation p50 / p95 / max ms (head PUT → on disk)", "from the master's write, p50 / p95 ms", "missed", "server CPU s / node / hour", "server CPU s / 1k req", "pullers' CPU s / node / hour", "worker peak RSS MiB"],
      [
        [
          formatCount(f.nodes),
          formatNumber(u.headPerS),
          formatCount(u.totalRequests / u.nodeHours),
          `${p(f.delaysMs, 50)} / ${p(f.delaysMs, 95)} / ${f.delaysMs.length ? formatCount(Math.max(...f.delaysMs)) : "—"}`,
          `${p(f.endToEndMs, 50)} / ${p(f.endToEndMs, 95)}`,
          `${f.missed} of ${formatCount(f.publishes * f.nodes)}`,
          formatNumber(u.serverCpuPerNodeHour),
          formatNumber(u.serverCpuPer1kReq),
          `${formatNumber(u.pullerCpuPerNodeHour)}${f.probeCpuS ? ` (bench probes, ${formatNumber(f.probeCpuS)} s, taken off)` : ""}`,
          f.workerRssKb.map((k) => formatNumber(k / 1024)).join(" / "),
        ],
      ],
      ["r", "r", "r", "r", "r", "r", "r", "r", "r", "r"],
    ),
  );
  // A poll period well past the interval means each run took long: the machine, not fansync's
  // design, then sets the delays (2 cores shared by the server, the master and every puller).
  const runS = u.pollPeriodS - f.intervalMs / 1000;
  if (u.pollPeriodS > 1.25 * (f.intervalMs / 1000)) {
    lines.push("");
    lines.push(`**Saturated**: each run took ${formatNumber(runS)} s on average, so nodes polled every ${formatNumber(u.pollPeriodS)} s instead of every ${formatNumber(f.intervalMs / 1000)} s; the delays measure this machine's load (see the load average above) as much as fansync. The per-poll and per-change request figures, and the cost model built on them, do not depend on it. Rerun with fewer nodes (FLEET_NODES) or a longer interval (FLEET_INTERVAL_MS) for delays that are fansync's own.`);
  }
  lines.push("");
  lines.push("Requests per node, by type (method, object, status):");
  lines.push("");
  const kinds = Object.keys(f.requests).sort((a, b) => (f.requests[b] ?? 0) - (f.requests[a] ?? 0));
  lines.push(
    formatTable(
      ["type", "per node per hour", "per node per change", "all nodes, in the window"],
      kinds.map((k) => [k, formatNumber(u.perNodeHour[k] ?? 0), k in u.perChange ? formatNumber(u.perChange[k] ?? 0) : "(a poll)", formatCount(f.requests[k] ?? 0)]),
      ["l", "r", "r", "r"],
    ),
  );
  lines.push("");
  lines.push(
    `A poll is one conditional GET of the head (${formatCount(u.headPerNodeHour)} per node per hour: one every ${formatNumber(u.pollPeriodS)} s, the interval plus each run's own time); a change adds ${formatNumber(u.perChangeTotal)} requests per node and ${formatCount(u.bytesPerChange)} body bytes (head, journal, the file). The master sent ${formatNumber(u.masterPutsPerChange)} PUTs and ${formatNumber(u.masterGetsPerChange)} GETs per change, whatever the fleet's size. Delays are measured per node and change from the head's PUT being answered to the file at its final path (probed every 25 ms); the second figure adds the master's quiet delay and upload.${f.note ? ` Note: ${f.note}.` : ""}`,
  );
  return lines.join("\n");
}

/**
 * The fleet woken by events beside the polling fleet (issue 24): the head's GET rate, what a node
 * sends an hour, and change → served across the fleet, each mode on its own line.
 */
export function fleetEventsSection(poll: FleetResult | undefined, ev: FleetResult | undefined): string {
  if (ev === undefined) return "_Not run (BENCH_SCENARIOS=fleet-events runs it; `node bench/fleet.ts` runs both modes alone)._";
  if (ev.status !== "ok") return `_${ev.status}${ev.note ? `: ${ev.note}` : ""}_`;
  const p = (xs: number[], q: number): string => (xs.length === 0 ? "—" : formatCount(percentile(xs, q)));
  const row = (f: FleetResult): string[] => {
    const u = fleetUnits(f);
    const sqs = Object.entries(f.requests).filter(([k]) => k.startsWith("SQS ")).reduce((a, [, v]) => a + v, 0);
    return [
      f.mode === "events" ? `events (safety poll ${formatNumber(f.intervalMs / 1000)} s)` : `polling ${formatNumber(f.intervalMs / 1000)} s`,
      formatCount(f.nodes),
      u ? formatNumber(u.headPerS) : "—",
      u ? formatNumber(sqs / (f.durationMs / 1000)) : "—",
      u ? formatCount(u.totalRequests / u.nodeHours) : "—",
      `${p(f.delaysMs, 50)} / ${p(f.delaysMs, 95)} / ${p(f.delaysMs, 99)}`,
      `${f.missed} of ${formatCount(f.publishes * f.nodes)}`,
      u ? formatNumber(u.serverCpuPerNodeHour) : "—",
    ];
  };
  const rows = [...(poll?.status === "ok" ? [row(poll)] : []), row(ev)];
  const table = formatTable(["mode", "nodes", "head GET req/s (all nodes)", "SQS req/s (all nodes)", "requests / node / hour", "change → served p50 / p95 / p99 ms (head PUT → on disk)", "missed", "server CPU s / node / hour"], rows, ["l", "r", "r", "r", "r", "r", "r", "r"]);
  const u = fleetUnits(ev);
  const pu = poll?.status === "ok" ? fleetUnits(poll) : undefined;
  const headRatio = u && pu && u.headPerS > 0 ? ` The head's GET rate with events is 1/${formatNumber(pu.headPerS / u.headPerS)} of polling's.` : "";
  const sizes = poll && poll.nodes !== ev.nodes ? ` (polling ran ${formatCount(poll.nodes)} nodes, events ${formatCount(ev.nodes)}: compare per node)` : "";
  const kinds = u ? Object.entries(u.perNodeHour).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${formatNumber(v)} ${k}`).join(", ") : "—";
  return `${table}\n\nThe same fleet and master as above${sizes}, each node \`pull --watch --events QUEUE\` with its own SQS queue on the head's SNS topic, the head's event by ${ev.eventsVia ?? "?"}; ${ev.publishes} changes in ${formatNumber(ev.durationMs / 1000)} s.${headRatio} With events, per node per hour: ${kinds}. An idle event-driven node sends one ReceiveMessage per 20 s long poll plus the safety poll's head GET; each change costs the run's head GET, journal and file, plus the message's ReceiveMessage and deletion: at a change every ${formatNumber(ev.publishEveryMs / 1000)} s the changes, not the polls, set the head's rate (an idle node's saving is in "Events vs polling" below).${ev.note ? ` Note: ${ev.note}.` : ""}`;
}

/** The cost model, from the fleet's per-poll and per-change figures. */
export function costSection(f: FleetResult | undefined): string {
  const u = f === undefined || f.status !== "ok" ? undefined : fleetUnits(f);
  if (f === undefined || u === undefined) return "_Needs a fleet run (BENCH_SCENARIOS=fleet)._";
  const lines: string[] = [];
  lines.push(
    `Prices: S3 Standard, ${PRICES.region}, list prices as used on ${PRICES.asOf}: GET $${PRICES.s3GetPer1k} per 1,000, PUT $${PRICES.s3PutPer1k} per 1,000, storage $${PRICES.s3StoragePerGbMonth} per GB-month, data transfer out to the internet $${PRICES.s3TransferOutPerGb} per GB (first 10 TB). A month is 30 days. Per node: one head GET per poll plus ${formatNumber(u.perChangeTotal)} requests and ${formatCount(u.bytesPerChange)} bytes per change (measured above; the changed files were 2–8 KB, so add the size of real changes), and an estimated ${NOT_MODIFIED_BYTES} bytes of headers per 304 answer. Transfer is $0 for nodes inside the bucket's region (EC2 in ${PRICES.region}), so the transfer column is the worst case.`,
  );
  lines.push("");
  const intervals = [2, 10, 30, 60, 300];
  const rates = [1, 12, 60];
  lines.push(
    formatTable(
      ["poll interval", ...rates.map((r) => `${r} change${r === 1 ? "" : "s"}/hour: requests, $ GET + $ transfer per node-month`)],
      intervals.map((i) => [
        `${i} s${i === 2 ? " (default)" : i === 60 ? " (cron, every minute)" : ""}`,
        ...rates.map((r) => {
          const m = nodeMonth(u, i, r);
          return `${kilo(m.requests)}, ${usd(m.getUsd)} + ${usd(m.transferUsd)} = ${usd(m.totalUsd)}`;
        }),
      ]),
      ["l", "r", "r", "r"],
    ),
  );
  lines.push("");
  const m2 = nodeMonth(u, 2, 12);
  lines.push(
    `For a fleet, multiply by the node count: 1,000 nodes at the default 2 s with 12 changes an hour cost about ${usd(m2.totalUsd * 1000)} a month, almost all of it head polls (${kilo(MONTH_S / 2)} GETs per node). The poll interval is the lever: requests scale with 1/interval, changes add little. The master's side does not grow with the fleet: ${formatNumber(u.masterPutsPerChange)} PUTs per change, ${usd((u.masterPutsPerChange * 12 * 720 * PRICES.s3PutPer1k) / 1000)} a month at 12 changes an hour; storage is the site's size × $${PRICES.s3StoragePerGbMonth}/GB-month (plus retained manifests and journals), once, not per node.`,
  );
  lines.push("");
  lines.push("**A CDN in front of the head** (e.g. CloudFront, the head's URL cached with a short TTL, conditional GETs answered at the edge): the origin then sees at most one head request per edge cache per TTL, whatever the number of nodes — with an origin shield, one per TTL in all. But the CDN bills every node's request instead, at its own price (CloudFront HTTPS, US/Europe: $0.0100 per 10,000, i.e. 2.5× an S3 GET; data out $0.085/GB; figures as understood on the date above, check before use), and a change can take one TTL longer to be seen. So a CDN does not make polling cheaper; it bounds the origin's request rate (the per-prefix limit below) and takes the nodes' load off the bucket:");
  lines.push("");
  const cdnRows = [
    [1000, 2, 1, 1],
    [1000, 2, 1, 20],
    [10000, 10, 2, 20],
  ].map(([n, i, ttl, e]) => {
    const c = cdnHeadMonth(n as number, i as number, ttl as number, e as number);
    return [formatCount(n as number), `${i} s`, `${ttl} s`, e === 1 ? "1 (an origin shield)" : `${e} (regional caches, no shield)`, `${kilo(c.cdnRequests)} GETs: ${usd(c.directUsd)}`, `${kilo(c.originGets)} origin GETs (${usd(c.originUsd)}) + ${kilo(c.cdnRequests)} CDN requests (${usd(c.cdnUsd)})`, `+${ttl} s`];
  });
  lines.push(formatTable(["nodes", "interval", "TTL", "edge caches asking the origin", "head polls a month, straight to S3", "the same through the CDN", "added delay, worst case"], cdnRows, ["r", "r", "r", "r", "r", "r", "r"]));
  lines.push("");
  lines.push(`**S3's per-prefix rate** (${formatCount(PRICES.prefixGetPerS)} GET/HEAD per second per partitioned prefix): every node polls the same key, so the head's prefix carries nodes ÷ interval requests a second; during a change, each node also reads a journal under the same meta prefix and the changed file (one key read by every node) within about one interval. S3 answers 503 SlowDown above the rate (fansync's SDK retries with backoff), and partitions a busy prefix only gradually.`);
  lines.push("");
  lines.push(
    formatTable(
      ["poll interval", "nodes before the head alone reaches the limit", "nodes before a change's burst (head + journal on the meta prefix) does", "head req/s per 1,000 nodes"],
      intervals.map((i) => {
        const l = prefixLimitNodes(u, i);
        return [`${i} s`, formatCount(l.steady), formatCount(l.burst), formatNumber(1000 / i)];
      }),
      ["l", "r", "r", "r"],
    ),
  );
  lines.push("");
  lines.push(`Measured here: ${formatNumber(u.headPerS)} head requests a second from ${formatCount(f.nodes)} nodes at ${f.intervalMs} ms, i.e. ${formatNumber((u.headPerS * 1000) / f.nodes)} per 1,000 nodes. Beyond the limits above, put the head behind a CDN (or raise the interval); regional buckets (\`replicate\`) also split the fleet's requests by region.`);
  return lines.join("\n");
}

/** Scenario 6: peak RSS of push and pull by tree size, fansync beside the peers, in MiB. */
export function memoryTable(report: BenchReport): string {
  const cols: { label: string; step: string; toolId: string }[] = [
    { label: "fansync push", step: "upload", toolId: "fansync" },
    { label: "fansync no-op push", step: "noop-push", toolId: "fansync" },
    { label: "fansync pull", step: "download", toolId: "fansync" },
    { label: "fansync no-op pull", step: "noop-pull", toolId: "fansync" },
    { label: "rclone push", step: "upload", toolId: "rclone" },
    { label: "rclone pull", step: "download", toolId: "rclone" },
    { label: "aws push", step: "upload", toolId: "aws" },
    { label: "aws pull", step: "download", toolId: "aws" },
    { label: "s3cmd push", step: "upload", toolId: "s3cmd" },
    { label: "s3cmd pull", step: "download", toolId: "s3cmd" },
  ];
  const body = report.trees.map((t) => [
    `${t.name} (${formatCount(t.files)} files)`,
    ...cols.map((c) => {
      const row = report.rows.find((r) => r.key === `${c.step}/${t.name}` && r.toolId === c.toolId);
      if (row === undefined) return "";
      if (row.status !== "ok") return row.status;
      return formatSummary(row.runs.flatMap((x) => (x.rssKb === undefined ? [] : [x.rssKb / 1024])));
    }),
  ]);
  return formatTable(["tree", ...cols.map((c) => c.label)], body, ["l", ...cols.map((): "r" => "r")]);
}

/**
 * Rows whose figures need a caveat: failures, missing tools, incomplete downloads. Grouped by tool
 * and note so one cause shows once with the scenarios it touched.
 */
export function caveatLines(report: BenchReport): string[] {
  const byCause = new Map<string, string[]>();
  for (const r of report.rows) {
    if (r.toolId === "fansync" && r.status === "not built") continue; // said once, above
    if (r.status === "ok" && r.note === undefined) continue;
    const cause = `${r.tool}: ${r.status === "ok" ? "" : `${r.status}: `}${(r.note ?? "").replace(/\d[\d,]* of [\d,]+ files missing/, "files missing").replace(/not a no-op: .*/, "not a no-op (objects re-sent)")}`;
    const list = byCause.get(cause) ?? [];
    list.push(r.status === "ok" && r.note ? `${r.key} (${r.note})` : r.key);
    byCause.set(cause, list);
  }
  return [...byCause].map(([cause, keys]) => `- ${cause} — in ${keys.join(", ")}`);
}

/** The whole RESULTS.md. */
export function renderReport(report: BenchReport, chartFile: string): string {
  const m = report.machine;
  const lines: string[] = [];
  lines.push(`# fansync benchmark results (BENCH_SCALE=${report.scale})`);
  lines.push("");
  lines.push(`Generated by \`bench/run.ts\` on ${report.finishedAt} (started ${report.startedAt}). Do not edit by hand: rerun \`npm run bench\` (full) or \`npm run bench:quick\` (small).`);
  lines.push("");
  if (report.scale !== "full") {
    lines.push("> **Small-scale figures** (2k and 5k trees, a small fleet): they show that the bench works and how the report reads, not how fansync compares at the sizes the goals name. Quote only a full run (`npm run bench`).");
    lines.push("");
  }
  lines.push("## Paired ratios and goals");
  lines.push("");
  lines.push(`fansync's time ÷ the peer's, computed within each round (each round runs every tool once, in an order rotated by one place per round, against a fresh server), then the median and range over the rounds: a busier machine in one round weighs on both sides of that round's ratio. Goals (issue 25): initial push ≤ 0.7× rclone at 10k and 100k; initial pull ≤ 1.0× at 10k and ≤ 0.7× at 100k; peak RSS ≤ 150 MiB at 10k and ≤ 200 MiB at 100k. A time goal is judged only from an idle machine: a load average of ${BUSY_LOAD} or more at the start marks it not comparable, since a busy machine takes rclone's second core away.`);
  lines.push("");
  lines.push(`Load average (1, 5, 15 min) at the start: ${m.loadAvgStart.map(formatNumber).join(" ")}; at the end: ${m.loadAvgEnd.map(formatNumber).join(" ")}.`);
  lines.push("");
  lines.push(pairedSummary(report));
  lines.push("");
  lines.push("## Machine and versions");
  lines.push("");
  const info: string[][] = [
    ["CPU", m.cpu],
    ["cores (nproc)", String(m.nproc)],
    ["memory", `${formatNumber(m.memoryGiB)} GiB`],
    ["kernel", m.kernel],
    ["load average at start / end", `${m.loadAvgStart.map(formatNumber).join(" ")} / ${m.loadAvgEnd.map(formatNumber).join(" ")}`],
    ...Object.entries(report.versions).map(([k, v]) => [k, v]),
    ["S3 server", report.settings.server],
    ["runs per figure", `${report.settings.runs} (huge trees: ${report.settings.hugeRuns})`],
    ["concurrency given to each tool", `${report.settings.concurrency} (s3cmd has no parallelism; the SDK and node:http loops keep 32 in flight)`],
    ["seed", String(report.settings.seed)],
    ["NFC/NFD twin names in trees", report.settings.unicode ? "yes (rclone runs with --no-unicode-normalization)" : "no"],
    ["peak RSS measured with", report.settings.rssMethod],
  ];
  lines.push(formatTable(["what", "value"], info));
  lines.push("");
  lines.push("Trees:");
  lines.push("");
  lines.push(
    formatTable(
      ["tree", "files", "bytes", "NFC/NFD twin entries"],
      report.trees.map((t) => [t.name, formatCount(t.files), formatCount(t.bytes), formatCount(t.twins)]),
      ["l", "r", "r", "r"],
    ),
  );
  lines.push("");
  lines.push("Each figure is the median of the runs with (min–max). Requests are counted by the proxy every tool goes through (LIST = GET on a bucket root). Ratios are fansync's median divided by the tool's median: below 1 fansync is faster / lighter.");
  lines.push("");
  lines.push(`![fansync/peer ratios](${chartFile})`);
  lines.push("");
  lines.push("## Where fansync loses and why");
  lines.push("");
  const fanRows = report.rows.filter((r) => r.toolId === "fansync" && r.key !== "startup");
  const fanOk = fanRows.some((r) => r.status === "ok");
  if (!fanOk) {
    const why = fanRows.find((r) => r.note !== undefined)?.note ?? "no fansync row";
    lines.push(`_No data: fansync was not measured in this run (${why}). The peer rows below stand; rerun once \`push\`/\`pull\` exist to fill this section._`);
  } else {
    const l = losses(report);
    lines.push(l.length > 0 ? l.join("\n") : "_fansync was within 10% of or better than every peer on time, requests and memory in this run._");
  }
  lines.push("");
  lines.push("## CPU per 1,000 requests (initial transfers)");
  lines.push("");
  lines.push("Client CPU is the tool process and its children (GNU time %U + %S); server CPU is the S3 server process over the same invocation (/proc/PID/stat utime + stime); proxy CPU is the bench process meanwhile, which is almost only the counting proxy. The fansync rows above read their explanation from these figures. The SDK loops and the node:http loop send the same requests with no listing or state: the CRC32 row keeps the SDK's default checksums, which fansync does not send; the no-checksum row is configured as fansync's client is.");
  lines.push("");
  lines.push(cpuTable(report));
  lines.push("");
  lines.push("## Caveats seen in this run");
  lines.push("");
  const caveats = caveatLines(report);
  lines.push(caveats.length > 0 ? caveats.join("\n") : "_None: every tool that ran finished, and every download was complete._");
  lines.push("");
  lines.push("## Peak RSS of push and pull by tree size (MiB)");
  lines.push("");
  lines.push(memoryTable(report));
  lines.push("");
  const nodeStart = report.rows.find((r) => r.key === "startup" && r.toolId === "node");
  const fanStart = report.rows.find((r) => r.key === "startup" && r.toolId === "fansync");
  const st = (r: Row | undefined): string =>
    r === undefined || r.status !== "ok" ? `— (${r?.status ?? "not run"}${r?.note ? `: ${r.note}` : ""})` : `${formatSummary(r.runs.map((x) => x.wallMs / 1000))} s, ${formatSummary(r.runs.flatMap((x) => (x.rssKb === undefined ? [] : [x.rssKb / 1024])))} MiB`;
  lines.push(`Start-up for scale: \`node -e 0\` ${st(nodeStart)}; \`fansync --version\` ${st(fanStart)}. Every fansync figure above includes one start-up.`);
  lines.push("");
  lines.push("## Results by scenario");
  for (const [key, rows] of groupByKey(report.rows)) {
    lines.push("");
    lines.push(`### ${rows[0]?.scenario ?? key}`);
    lines.push("");
    lines.push(scenarioTable(rows));
  }
  lines.push("");
  lines.push("### Propagation latency: `watch` + `pull --watch`, one file at a time");
  lines.push("");
  const p = report.propagation;
  if (p.status !== "ok") {
    lines.push(`_${p.status}${p.note ? `: ${p.note}` : ""}_`);
  } else {
    const s = p.samplesMs;
    const f = (x: number | undefined): string => (x === undefined ? "—" : formatCount(x));
    lines.push(
      formatTable(
        ["files written", "arrived", "p50 ms", "p95 ms", "max ms", "watch --delay", "pull --interval", "daemon peak RSS MiB (watch / pull)", "exit codes on SIGTERM"],
        [
          [
            String(p.files),
            String(p.files - p.lost),
            f(s.length ? percentile(s, 50) : undefined),
            f(s.length ? percentile(s, 95) : undefined),
            f(s.length ? Math.max(...s) : undefined),
            `${p.delayMs} ms`,
            `${p.intervalMs} ms`,
            `${p.watchRssKb === undefined ? "—" : formatNumber(p.watchRssKb / 1024)} / ${p.pullRssKb === undefined ? "—" : formatNumber(p.pullRssKb / 1024)}`,
            `${p.watchExit ?? "?"} / ${p.pullExit ?? "?"}`,
          ],
        ],
        ["r", "r", "r", "r", "r", "r", "r", "r", "l"],
      ),
    );
    if (p.note) lines.push(`\n${p.note}`);
  }
  lines.push("");
  lines.push("### Two-way propagation: three `fansync sync` nodes, one file at a time");
  lines.push("");
  lines.push(syncPropagationSection(report.syncPropagation));
  lines.push("");
  lines.push("### Interrupted at half, then rerun: what the rerun sends against the remainder");
  lines.push("");
  lines.push(interruptedSection(report.interrupted));
  lines.push("");
  lines.push("## Simulated fleet: many pullers, one server, a master publishing");
  lines.push("");
  lines.push(fleetSection(report.fleet));
  lines.push("");
  lines.push("### The fleet woken by events: the head's GET rate and change → served, events vs polling");
  lines.push("");
  lines.push(fleetEventsSection(report.fleet, report.fleetEvents));
  lines.push("");
  lines.push("## Cost model: requests and dollars per node per month");
  lines.push("");
  lines.push(costSection(report.fleet));
  lines.push("");
  lines.push("## Events vs polling: change → served on every node, and an idle node's requests");
  lines.push("");
  lines.push(eventsSection(report.events));
  lines.push("");
  return lines.join("\n");
}

/**
 * The events row (issue 24): p50/p99 of change → served on every node with `pull --watch --events`
 * against 2 s polling, and requests per idle node-hour of each, with the goals beside them.
 */
export function eventsSection(e: EventsResult | undefined): string {
  if (e === undefined) return "_Not run (BENCH_SCENARIOS=events runs it, on moto: S3, SNS and SQS on one endpoint; `node bench/events.ts` runs it alone)._";
  if (e.status !== "ok") return `_${e.status}${e.note ? `: ${e.note}` : ""}_`;
  const ms = (xs: number[], q: number): string => (xs.length ? formatCount(Math.round(percentile(xs, q))) : "—");
  const rows = e.rows.map((r) => {
    const s = [...r.samplesMs].sort((a, b) => a - b);
    const kinds = Object.entries(r.idleByKind).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${formatCount(v)} ${k}`).join(", ");
    return [r.mode, String(s.length), String(r.lost), ms(s, 50), ms(s, 99), s.length ? formatCount(Math.round(s[s.length - 1] as number)) : "—", formatCount(Math.round(r.idleRequestsPerNodeHour)), kinds || "none"];
  });
  const table = formatTable(["mode", "changes served", "lost", "p50 ms", "p99 ms", "max ms", "requests per idle node-hour", "idle window, all nodes"], rows, ["l", "r", "r", "r", "r", "r", "r", "l"]);
  const poll = e.rows.find((r) => r.mode === "polling 2s");
  const ev = e.rows.find((r) => r.mode === "events");
  const ratio = poll && ev && ev.idleRequestsPerNodeHour > 0 ? `Idle requests, events ÷ polling: 1/${formatNumber(poll.idleRequestsPerNodeHour / ev.idleRequestsPerNodeHour)} (goal ≤ 1/10). ` : "";
  // The goal's figures side by side, over the same number of changes per mode.
  const side = poll && ev ? `Change → served on all ${e.nodes} nodes, events vs 2 s polling: p50 ${ms(ev.samplesMs, 50)} vs ${ms(poll.samplesMs, 50)} ms, p99 ${ms(ev.samplesMs, 99)} vs ${ms(poll.samplesMs, 99)} ms (over ${ev.samplesMs.length} and ${poll.samplesMs.length} changes served).\n\n` : "";
  const few = e.changes < 50 ? ` Only ${e.changes} changes: too few for a p99 (the goal names ≥ 50).` : "";
  return `${table}\n\n${side}${e.nodes} \`fansync pull --watch\` nodes on moto, ${e.changes} changes per mode, each timed from the server's answer to the head's PUT until every node holds the file. Goals (issue 24), with events: p50 < 300 ms, p99 < 1 s. ${ratio}The idle window is ${e.idleSeconds} s through a counting proxy (S3 and SQS requests alike); with events the 60 s safety poll adds 60 head GETs an hour, which a window under a minute may miss.${few}`;
}

/** The two-way row: a file written on node A until B and C both serve it, and back from C. */
function syncPropagationSection(p: BenchReport["syncPropagation"]): string {
  if (p === undefined) return "_not run (BENCH_SCENARIOS=sync-propagation runs it; on moto, since `sync` needs conditional writes)_";
  if (p.status !== "ok") return `_${p.status}${p.note ? `: ${p.note}` : ""}_`;
  const f = (xs: number[], q: number): string => (xs.length ? formatCount(percentile(xs, q)) : "—");
  const rows = [
    ["A → B and C (an edit on one writer)", String(p.files), String(p.samplesMs.length), f(p.samplesMs, 50), f(p.samplesMs, 95), p.samplesMs.length ? formatCount(Math.max(...p.samplesMs)) : "—"],
    ["C → A and B (a user upload on an app server)", String(p.files), String(p.reverseMs.length), f(p.reverseMs, 50), f(p.reverseMs, 95), p.reverseMs.length ? formatCount(Math.max(...p.reverseMs)) : "—"],
  ];
  const table = formatTable(["direction", "files written", "arrived on both", "p50 ms", "p95 ms", "max ms"], rows, ["l", "r", "r", "r", "r", "r"]);
  return `${table}\n\nEach file is timed from close() on the writing node until both other nodes hold it complete (the later of the two), with \`--delay ${p.delayMs}ms\` and \`--interval ${p.intervalMs}ms\` on every node; lost: ${p.lost}.${p.note ? ` ${p.note}` : ""}`;
}

/** The interrupted-work row: a push and a pull killed at half, then rerun (goal: at most 1.1× the remainder). */
function interruptedSection(p: BenchReport["interrupted"]): string {
  if (p === undefined) return "_not run (BENCH_SCENARIOS=interrupted runs it)_";
  if (p.status !== "ok" && p.push === undefined) return `_${p.status}${p.note ? `: ${p.note}` : ""}_`;
  const row = (what: string, r: NonNullable<Interrupted["push"]> | undefined): string[] =>
    r === undefined ? [what, "—", "—", "—", "—", "—", "—"] : [what, formatCount(r.doneBefore), formatCount(r.remainder.objects), formatCount(r.remainder.bytes), formatCount(r.rerun.objects), formatCount(r.rerun.bytes), `${r.ratio.toFixed(2)}×${r.converged ? "" : " (did not converge)"}`];
  const table = formatTable(["run", "objects before the kill", "remainder objects", "remainder bytes", "rerun objects", "rerun bytes", "rerun / remainder"], [row("push (content PUTs)", p.push), row("pull (content GETs)", p.pull)], ["l", "r", "r", "r", "r", "r", "r"]);
  return `${table}\n\n${formatCount(p.files)} files of 1–20 KB; each run is killed (SIGKILL) once half its content requests were answered, then run again to the end through the counting proxy. Goal: at most 1.1× the remainder.${p.status !== "ok" && p.note ? ` ${p.status}: ${p.note}` : ""}`;
}
