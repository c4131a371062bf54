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
