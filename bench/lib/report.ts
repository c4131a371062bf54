// Renders a BenchReport as markdown. Pure: strings in, string out.
import { summarize, ratio, median } from "./stats.ts";
import type { BenchReport, Row, RunRecord } from "./results.ts";
import { percentile } from "./stats.ts";

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
      status,
    ];
  });
  return formatTable(
    ["tool", "time s, median (min–max)", "requests (median)", "peak RSS MiB", "fansync/tool time", "fansync/tool requests", "fansync/tool RSS", "note"],
    body,
    ["l", "r", "r", "r", "r", "r", "r", "l"],
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
        const ceiling = r.toolId === "sdk-loop" ? " (the SDK loop is the ceiling of a Node + SDK client: no listing, no comparison, no state)" : "";
        why.push(`takes ${formatNumber(tr)}× the time (${formatNumber(fT)} s vs ${formatNumber(t ?? 0)} s)${ceiling}`);
        if (qr !== undefined && qr <= 1) {
          why.push(`while sending ${formatNumber(qr)}× the requests, so the gap is local work (scanning, hashing, state) or process start-up, not the server`);
        } else if (qr !== undefined) {
          why.push(`and sends ${formatNumber(qr)}× the requests (${formatRequests(fan.runs)} vs ${formatRequests(r.runs)})`);
        }
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
    ["concurrency given to each tool", `${report.settings.concurrency} (s3cmd has no parallelism; SDK loop fixed at 32)`],
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
  return lines.join("\n");
}
