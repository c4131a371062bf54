import { test } from "node:test";
import assert from "node:assert/strict";
import { formatRatio, formatRequests, formatSummary, formatTable, scenarioTable } from "../../bench/lib/report.ts";
import { compareListing, describeCheck } from "../../bench/lib/verify.ts";
import { diffCounts, requestKind } from "../../bench/lib/counting-proxy.ts";
import type { Row } from "../../bench/lib/results.ts";

test("formatTable renders header, alignment row and cells, escaping pipes", () => {
  const t = formatTable(["tool", "time"], [["a|b", "1.0"], ["c"]], ["l", "r"]);
  assert.equal(t, ["| tool | time |", "|---|---:|", "| a\\|b | 1.0 |", "| c |  |"].join("\n"));
});

test("formatSummary shows median (min–max), a single value alone, a dash for nothing", () => {
  assert.equal(formatSummary([1.2, 1.0, 3.5]), "1.20 (1.00–3.50)");
  assert.equal(formatSummary([12.34]), "12.3");
  assert.equal(formatSummary([0.05, 0.05]), "0.050");
  assert.equal(formatSummary([]), "—");
});

test("formatRatio", () => {
  assert.equal(formatRatio(0.5), "0.500×");
  assert.equal(formatRatio(2), "2.00×");
  assert.equal(formatRatio(undefined), "—");
});

test("formatRequests gives median per kind, largest first", () => {
  const runs = [
    { wallMs: 1, requests: { PUT: 10, LIST: 1 }, bytesUp: 0, bytesDown: 0 },
    { wallMs: 1, requests: { PUT: 12, LIST: 1 }, bytesUp: 0, bytesDown: 0 },
    { wallMs: 1, requests: { PUT: 11, LIST: 1 }, bytesUp: 0, bytesDown: 0 },
  ];
  assert.equal(formatRequests(runs), "12: 11 PUT + 1 LIST");
  assert.equal(formatRequests([{ wallMs: 1, requests: { GET: 1 }, bytesUp: 0, bytesDown: 0 }]), "1 GET");
});

test("scenarioTable puts fansync/tool ratios on peer rows and reasons on empty rows", () => {
  const run = (s: number, n: number): Row["runs"][number] => ({ wallMs: s * 1000, rssKb: 102400, requests: { GET: n }, bytesUp: 0, bytesDown: 0 });
  const rows: Row[] = [
    { key: "k", scenario: "S", toolId: "fansync", tool: "fansync", status: "ok", runs: [run(1, 1)] },
    { key: "k", scenario: "S", toolId: "rclone", tool: "rclone", status: "ok", runs: [run(4, 100)] },
    { key: "k", scenario: "S", toolId: "s3cmd", tool: "s3cmd sync", status: "missing", note: "s3cmd not found", runs: [] },
  ];
  const lines = scenarioTable(rows).split("\n");
  assert.equal(lines.length, 5);
  assert.match(lines[3] ?? "", /^\| rclone \| 4\.00 \| 100 GET \| 100 \| 0\.250× \| 0\.010× \| 1\.00× \|/);
  assert.match(lines[4] ?? "", /missing: s3cmd not found/);
});

test("compareListing counts present, wrong-sized, missing and extra files", () => {
  const expected = [
    { path: "a", size: 1 },
    { path: "b", size: 2 },
    { path: "c", size: 3 },
  ];
  const c = compareListing(expected, new Map([["a", 1], ["b", 5], ["z", 1]]));
  assert.deepEqual(c, { expected: 3, present: 1, wrongSize: 1, extra: 1 });
  assert.equal(describeCheck(c), "1 of 3 files missing, 1 with the wrong size, 1 unexpected files");
  assert.equal(describeCheck(compareListing(expected, new Map([["a", 1], ["b", 2], ["c", 3]]))), "");
});

test("the proxy classifies bucket-root GETs as LIST and diffs counters", () => {
  assert.equal(requestKind("GET", "/bucket?list-type=2&prefix=site/"), "LIST");
  assert.equal(requestKind("GET", "/bucket/"), "LIST");
  assert.equal(requestKind("GET", "/bucket/site/a.html"), "GET");
  assert.equal(requestKind("PUT", "/bucket/site/a.html"), "PUT");
  const d = diffCounts({ requests: { GET: 5, PUT: 2 }, bytesUp: 10, bytesDown: 20 }, { requests: { GET: 3, PUT: 2 }, bytesUp: 4, bytesDown: 0 });
  assert.deepEqual(d, { requests: { GET: 2 }, bytesUp: 6, bytesDown: 20 });
});

test("formatNumber keeps two significant digits for tiny ratios", async () => {
  const { formatNumber } = await import("../../bench/lib/report.ts");
  assert.equal(formatNumber(0.00049), "0.00049");
  assert.equal(formatNumber(0), "0.000");
  assert.equal(formatNumber(1234.5), "1235");
});

// Issue 25: a goal is never judged from a busy machine (it takes rclone's second core away).
test("goalVerdict: met / not met on an idle machine, not comparable from a busy one", async () => {
  const { goalVerdict } = await import("../../bench/lib/report.ts");
  assert.equal(goalVerdict(0.6, 0.7, 0.2), "met");
  assert.equal(goalVerdict(1.4, 0.7, 0.49), "not met (2.00× the goal)");
  assert.equal(goalVerdict(0.6, 0.7, 1.0), "not comparable: machine busy (load 1.00 at start)");
  assert.equal(goalVerdict(0.6, 0.7, 3.7), "not comparable: machine busy (load 3.70 at start)");
  // Memory is judged whatever the load.
  assert.equal(goalVerdict(120, 150, undefined), "met");
});

test("pairedSummary judges the 10k goals only when the load at start was below 1, and RSS at 10k and 100k", async () => {
  const { pairedSummary } = await import("../../bench/lib/report.ts");
  const run = (s: number, r: number, rssMiB: number): Row["runs"][number] => ({ wallMs: s * 1000, rssKb: rssMiB * 1024, requests: {}, bytesUp: 0, bytesDown: 0, run: r });
  const rows: Row[] = [
    { key: "upload/10k", scenario: "S", toolId: "fansync", tool: "fansync", status: "ok", runs: [run(6, 0, 140), run(6, 1, 140), run(6, 2, 140)] },
    { key: "upload/10k", scenario: "S", toolId: "rclone", tool: "rclone", status: "ok", runs: [run(10, 0, 60), run(10, 1, 60), run(10, 2, 60)] },
    { key: "download/10k", scenario: "S", toolId: "fansync", tool: "fansync", status: "ok", runs: [run(5, 0, 180), run(5, 1, 180), run(5, 2, 180)] },
    { key: "download/10k", scenario: "S", toolId: "rclone", tool: "rclone", status: "ok", runs: [run(4, 0, 60), run(4, 1, 60), run(4, 2, 60)] },
  ];
  const report = (load: number): Parameters<typeof pairedSummary>[0] =>
    ({
      scale: "full", startedAt: "", finishedAt: "",
      machine: { nproc: 2, memoryGiB: 24, kernel: "k", cpu: "c", loadAvgStart: [load, load, load], loadAvgEnd: [load, load, load] },
      versions: {}, settings: { runs: 3, hugeRuns: 1, concurrency: 16, server: "s", seed: 1, unicode: true, rssMethod: "m" },
      trees: [{ name: "10k", files: 10_000, bytes: 1, twins: 0 }], rows,
      propagation: { status: "n/a", note: "", samplesMs: [], files: 0, lost: 0, delayMs: 0, intervalMs: 0 },
    }) as Parameters<typeof pairedSummary>[0];
  const idle = pairedSummary(report(0.3));
  assert.match(idle, /initial push, 10k \| rclone \| 0\.600.*\| ≤ 0\.700× \| met \|/);
  assert.match(idle, /initial pull, 10k \| rclone \| 1\.25.*\| ≤ 1\.00× \| not met \(1\.25× the goal\) \|/);
  assert.match(idle, /peak RSS, initial push, 10k \| — \| 140 MiB \| ≤ 150 MiB \| met \|/);
  assert.match(idle, /peak RSS, initial pull, 10k \| — \| 180 MiB \| ≤ 150 MiB \| not met \(1\.20× the goal\) \|/);
  const busy = pairedSummary(report(1.8));
  assert.match(busy, /initial push, 10k \| rclone \| .*\| not comparable: machine busy \(load 1\.80 at start\) \|/);
  assert.doesNotMatch(busy, /initial (push|pull), 10k \| rclone \|[^\n]*\| met \|/);
  // RSS is still judged on a busy machine.
  assert.match(busy, /peak RSS, initial push, 10k \| — \| 140 MiB \| ≤ 150 MiB \| met \|/);
});

test("the counting proxy's WAN delay holds each request and each answer", async () => {
  const { createServer, request } = await import("node:http");
  const { startCountingProxy } = await import("../../bench/lib/counting-proxy.ts");
  const upstream = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => res.end(`echo:${body}`));
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const port = (upstream.address() as { port: number }).port;
  const ask = async (endpoint: string): Promise<{ text: string; ms: number }> => {
    const t0 = performance.now();
    const text = await new Promise<string>((resolve, reject) => {
      const req = request(`${endpoint}/bucket/key`, { method: "PUT" }, (res) => {
        let b = "";
        res.on("data", (c: Buffer) => (b += c.toString()));
        res.on("end", () => resolve(b));
      });
      req.on("error", reject);
      req.end("hello");
    });
    return { text, ms: performance.now() - t0 };
  };
  const delayed = await startCountingProxy(`http://127.0.0.1:${port}`, undefined, 80);
  try {
    const r = await ask(delayed.endpoint);
    assert.equal(r.text, "echo:hello");
    // 80 ms each way: a timer never fires early, so at least 160 ms went by.
    assert.ok(r.ms >= 158, `a request through an 80 ms-each-way proxy took only ${r.ms.toFixed(1)} ms`);
    assert.deepEqual(delayed.snapshot().requests, { PUT: 1 });
    assert.equal(delayed.snapshot().bytesUp, 5);
  } finally {
    await delayed.close();
    upstream.close();
  }
});

test("eventsSection: p50/p99 per mode, the idle ratio against the goal, and why it is empty", async () => {
  const { eventsSection } = await import("../../bench/lib/report.ts");
  const text = eventsSection({
    status: "ok", nodes: 3, changes: 4, idleSeconds: 30,
    rows: [
      { mode: "polling 2s", samplesMs: [900, 1500, 1700, 2100], lost: 0, idleRequestsPerNodeHour: 1800, idleByKind: { GET: 45 } },
      { mode: "events", samplesMs: [200, 250, 280, 900], lost: 1, idleRequestsPerNodeHour: 180, idleByKind: { "POST /": 4, GET: 1 } },
    ],
  });
  const lines = text.split("\n");
  assert.match(lines[2] ?? "", /^\| polling 2s \| 4 \| 0 \| 1,600 \| 2,088 \| 2,100 \| 1,800 \| 45 GET \|$/);
  assert.match(lines[3] ?? "", /^\| events \| 4 \| 1 \| 265 \| 881 \| 900 \| 180 \| 4 POST \/, 1 GET \|$/);
  assert.match(text, /events ÷ polling: 1\/10\.0 \(goal ≤ 1\/10\)/);
  assert.match(text, /Only 4 changes: too few for a p99/);
  assert.match(eventsSection(undefined), /Not run \(BENCH_SCENARIOS=events/);
  assert.equal(eventsSection({ status: "failed", note: "moto did not start", nodes: 3, changes: 50, idleSeconds: 60, rows: [] }), "_failed: moto did not start_");
});
