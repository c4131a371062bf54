import assert from "node:assert/strict";
import { test } from "node:test";
import { validateConfig } from "../../src/core/config.ts";
import { judgeHealth, judgeSource, type SelfState } from "../../src/core/health.ts";
import { NODE_REPORT_FORMAT, type NodeReport, parseNodeReport, planFleetView, renderFleetTable, reportChangeKey, shouldReport } from "../../src/core/node-report.ts";
import { escapeHtml, renderLagChart, renderStatusPage } from "../../src/core/status-page.ts";

const NOW = Date.parse("2026-11-21T12:00:00Z");
const ago = (s: number) => new Date(NOW - s * 1000).toISOString();
const rep = (node: string, o: Partial<NodeReport> = {}): NodeReport => ({
  format: NODE_REPORT_FORMAT, node, host: node, status: "OK", generation: 5, headGeneration: 5, lagSeconds: 0, source: "s3://b/site/",
  lastSuccess: ago(10), lastError: null, time: ago(10), everyMs: 60_000, version: "1", ...o,
});
const head = { generation: 5, time: ago(100) };

test("parseNodeReport accepts a report and refuses junk, wrong formats, bad names and oversize bodies", () => {
  const ok = rep("web-1");
  assert.deepEqual(parseNodeReport(Buffer.from(JSON.stringify(ok))), ok);
  for (const bad of ["not json", "[]", "null", JSON.stringify({ ...ok, format: "x" }), JSON.stringify({ ...ok, node: "../x" }), JSON.stringify({ ...ok, status: "FINE" }),
    JSON.stringify({ ...ok, generation: -1 }), JSON.stringify({ ...ok, time: "yesterday" }), JSON.stringify({ ...ok, lagSeconds: "1" }), JSON.stringify({ ...ok, host: "x".repeat(17_000) })]) {
    assert.equal(parseNodeReport(Buffer.from(bad)), undefined, bad.slice(0, 80));
  }
});

test("shouldReport: first time, on change, after the period, and after a clock step back", () => {
  const k = reportChangeKey(rep("a"));
  assert.equal(shouldReport(undefined, k, NOW, 60_000), true);
  assert.equal(shouldReport({ key: k, at: NOW - 1000 }, k, NOW, 60_000), false);
  assert.equal(shouldReport({ key: k, at: NOW - 60_000 }, k, NOW, 60_000), true);
  assert.equal(shouldReport({ key: reportChangeKey(rep("a", { generation: 4 })), at: NOW - 1000 }, k, NOW, 60_000), true);
  assert.equal(shouldReport({ key: k, at: NOW + 5000 }, k, NOW, 60_000), true);
});

test("planFleetView: behind, silent, newest report per node, counts, sorted by name", () => {
  const v = planFleetView(head, [
    { report: rep("b-node", { generation: 3, headGeneration: 3 }), from: "s3://r/" },
    { report: rep("a-node"), from: "s3://p/" },
    { report: rep("a-node", { generation: 2, time: ago(500) }), from: "s3://r/" },
    { report: rep("dead", { time: ago(3600) }), from: "s3://p/" },
    { report: rep("err", { status: "ERROR", lastError: "RemoteError: x" }), from: "s3://p/" },
  ], NOW, 300_000);
  assert.deepEqual(v.nodes.map((n) => n.node), ["a-node", "b-node", "dead", "err"]);
  const by = new Map(v.nodes.map((n) => [n.node, n]));
  assert.equal(by.get("a-node")?.generation, 5, "the newest of a node's two reports wins");
  assert.equal(by.get("a-node")?.from, "s3://p/");
  assert.equal(by.get("b-node")?.behind, 2);
  assert.equal(by.get("b-node")?.lagSeconds, 100, "behind: at least since the newest head was published");
  assert.equal(by.get("dead")?.status, "SILENT");
  assert.deepEqual(v.counts, { OK: 2, STALE: 0, ERROR: 1, SILENT: 1 });
  // A node reporting every 10 min is not silent after 15 min (3 periods), one reporting every minute is.
  const slow = planFleetView(head, [{ report: rep("cron", { time: ago(900), everyMs: 600_000 }), from: "" }], NOW, 300_000);
  assert.equal(slow.nodes[0]?.status, "OK");
});

test("planFleetView keeps counting lag from when a node was first seen behind", () => {
  const r = [{ report: rep("x", { generation: 3, headGeneration: 3 }), from: "" }];
  const first = planFleetView({ generation: 4, time: ago(100) }, r, NOW, 300_000);
  assert.equal(first.nodes[0]?.lagSeconds, 100);
  // 60 s later a newer head (published 5 s ago) arrives; the node is still at 3.
  const later = planFleetView({ generation: 5, time: new Date(NOW + 55_000).toISOString() }, r, NOW + 60_000, 300_000, first.behindSince);
  assert.equal(later.nodes[0]?.lagSeconds, 160);
  const caught = planFleetView({ generation: 5, time: ago(0) }, [{ report: rep("x"), from: "" }], NOW + 70_000, 300_000, later.behindSince);
  assert.equal(caught.nodes[0]?.lagSeconds, 0);
  assert.deepEqual(caught.behindSince, {});
});

test("renderFleetTable: a row per node, and a hint when nobody reports", () => {
  const t = renderFleetTable(planFleetView(head, [{ report: rep("web-1"), from: "" }], NOW, 300_000));
  assert.match(t, /^NODE\s+STATUS\s+GEN/);
  assert.match(t, /^web-1\s+OK\s+5\s+0\s+0s\s+10s ago\s+10s ago/m);
  assert.match(renderFleetTable(planFleetView(head, [], NOW, 300_000)), /pull --report/);
});

const self: SelfState = { role: "pull", status: "OK", generation: 5, headGeneration: 5, lagSeconds: 0, lastSuccess: ago(1), lastAttempt: ago(1), lastError: null, expectEveryMs: 2000, detail: "" };

test("judgeSource (/readyz): starting, error, lagging, stuck, ok", () => {
  assert.deepEqual(judgeSource(self, NOW, 300_000), { ok: true, word: "OK", text: "OK generation 5" });
  assert.match(judgeSource({ ...self, status: "STARTING", lastAttempt: null }, NOW, 300_000).text, /^STARTING/);
  assert.equal(judgeSource({ ...self, lastError: "RemoteError: down" }, NOW, 300_000).ok, false);
  assert.match(judgeSource({ ...self, lagSeconds: 301 }, NOW, 300_000).text, /^LAGGING .*301s behind \(limit 300s\)/);
  assert.match(judgeSource({ ...self, lastAttempt: ago(400) }, NOW, 300_000).text, /^STUCK no run for 400s/);
  // The uploader does not poll: a quiet docroot is not a stuck daemon.
  assert.equal(judgeSource({ ...self, role: "push", expectEveryMs: undefined, lastAttempt: ago(86_400) }, NOW, 300_000).ok, true);
});

test("judgeHealth (/healthz): a node with a complete generation stays up whatever its source does", () => {
  const serving = { ...self, serving: 5 };
  const cases: [Partial<SelfState>, boolean, RegExp][] = [
    [{}, true, /^OK generation 5$/],
    [{ lastError: "RemoteError: down" }, true, /^DEGRADED generation 5: the last run failed: RemoteError: down$/],
    [{ lagSeconds: 301 }, true, /^STALE generation 5: generation 5 of 5, 301s behind \(limit 300s\)$/],
    [{ lastAttempt: ago(400) }, true, /^DEGRADED generation 5: no run for 400s/],
    [{ status: "STARTING", lastAttempt: null }, true, /^DEGRADED generation 5: no run has finished yet$/],
    [{ serving: 0, lastError: "RemoteError: down" }, false, /^EMPTY no complete generation in the docroot yet; ERROR generation 5: RemoteError: down$/],
    [{ serving: 0, status: "STARTING", lastAttempt: null }, false, /^EMPTY .*; STARTING/],
    // Without a docroot (push, replicate) the source rule decides.
    [{ serving: undefined, lastError: "RemoteError: down" }, false, /^ERROR generation 5/],
  ];
  for (const [change, ok, text] of cases) {
    const v = judgeHealth({ ...serving, ...change }, NOW, 300_000);
    assert.equal(v.ok, ok, JSON.stringify(change));
    assert.match(v.text, text, JSON.stringify(change));
  }
});

test("status page escapes bucket-supplied text and draws one line per node", () => {
  assert.equal(escapeHtml(`<a href="x">'&`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;");
  const fleet = planFleetView(head, [{ report: rep("n1", { status: "ERROR", lastError: "<script>alert(1)</script>" }), from: "s3://b/<x>/" }], NOW, 300_000);
  const html = renderStatusPage({
    host: "h", version: "1", now: NOW, self, health: judgeHealth(self, NOW, 300_000), readiness: judgeSource(self, NOW, 300_000), locations: [{ url: "s3://b/site/", generation: 5, time: ago(100), files: 3, bytes: 10, error: null }],
    fleet, fleetAt: NOW, fleetError: null, history: [{ t: NOW - 20_000, lags: { n1: 3, n2: 0 } }, { t: NOW - 10_000, lags: { n1: 5, n2: 1 } }], windowMs: 3_600_000, refreshSeconds: 15,
  });
  assert.ok(!html.includes("<script>alert"), "no live script from a report");
  assert.ok(html.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
  assert.equal(html.match(/<polyline /g)?.length, 2);
  assert.match(renderLagChart([], NOW, 3_600_000), /no samples yet/);
});

test("config: --http address forms, node id and health lag", () => {
  const c = (raw: Record<string, unknown>) => validateConfig(raw);
  assert.deepEqual(c({ http: "9180" }).http, { host: "127.0.0.1", port: 9180 });
  assert.deepEqual(c({ http: "0.0.0.0:80" }).http, { host: "0.0.0.0", port: 80 });
  assert.deepEqual(c({ http: "[::1]:9180" }).http, { host: "::1", port: 9180 });
  assert.throws(() => c({ http: "localhost:99999" }), /http: expected an address/);
  assert.throws(() => c({ nodeId: "../etc" }), /nodeId: expected a node name/);
  assert.equal(c({ staleAfter: "2m" }).healthMaxLag, 120_000);
  assert.equal(c({ reportTo: "s3://bucket/p/" }).report, true, "--report-to implies --report");
});

test("SILENT: a node is silent only once its newest report is older than both --stale-after and three of its own periods", () => {
  const statusOf = (ageS: number, everyMs: number, silentAfterMs: number) =>
    planFleetView(head, [{ report: rep("n", { time: ago(ageS), everyMs }), from: "s3://p/" }], NOW, silentAfterMs).nodes[0]?.status;
  // A cron node reporting every 5 minutes is not silent after 6 minutes, although --stale-after is 5m.
  assert.equal(statusOf(360, 300_000, 300_000), "OK");
  assert.equal(statusOf(901, 300_000, 300_000), "SILENT");
  // A daemon reporting every minute: --stale-after is the longer of the two.
  assert.equal(statusOf(240, 60_000, 300_000), "OK");
  assert.equal(statusOf(301, 60_000, 300_000), "SILENT");
});
