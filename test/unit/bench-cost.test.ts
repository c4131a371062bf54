import { test } from "node:test";
import assert from "node:assert/strict";
import { cdnHeadMonth, fleetUnits, MONTH_S, nodeMonth, prefixLimitNodes } from "../../bench/lib/cost.ts";
import { classifyRequest } from "../../bench/lib/fleet.ts";
import { cpuPer1k, fleetEventsSection, pairedRatios } from "../../bench/lib/report.ts";
import type { FleetResult, Row } from "../../bench/lib/results.ts";

const fleet = (over: Partial<FleetResult> = {}): FleetResult => ({
  status: "ok",
  nodes: 10,
  workers: 1,
  intervalMs: 2000,
  publishEveryMs: 5000,
  // One hour, so per-hour figures are the counts divided by the node count.
  durationMs: 3_600_000,
  publishes: 100,
  baseFiles: 5,
  requests: { "GET head 304": 17_000, "GET head 200": 1_000, "GET journal 200": 1_000, "GET content 200": 1_000 },
  bytesDown: 10 * 100 * 5000,
  masterRequests: { "PUT content 200": 100, "PUT head 200": 100, "GET head 200": 100 },
  delaysMs: [],
  endToEndMs: [],
  missed: 0,
  serverCpuS: 20,
  proxyCpuS: 0,
  pullersCpuS: 40,
  workerRssKb: [],
  server: "test",
  ...over,
});

test("fleetUnits: polls are head GETs whatever their status; a change costs the rest", () => {
  const u = fleetUnits(fleet());
  assert.ok(u);
  assert.equal(u.headPerNodeHour, 1800);
  assert.equal(u.pollPeriodS, 2);
  assert.equal(u.headPerS, 5);
  assert.equal(u.perChangeTotal, 2);
  assert.deepEqual(u.perChange, { "GET journal 200": 1, "GET content 200": 1 });
  assert.equal(u.bytesPerChange, 5000);
  assert.equal(u.masterPutsPerChange, 2);
  assert.equal(u.masterGetsPerChange, 1);
  assert.equal(u.serverCpuPerNodeHour, 2);
  assert.equal(u.serverCpuPer1kReq, 1);
  assert.equal(fleetUnits(fleet({ durationMs: 0 })), undefined);
});

test("nodeMonth: one GET per poll plus the per-change requests, at list prices", () => {
  const u = fleetUnits(fleet());
  assert.ok(u);
  const m = nodeMonth(u, 2, 0);
  assert.equal(m.requests, MONTH_S / 2);
  assert.ok(Math.abs(m.getUsd - (MONTH_S / 2 / 1000) * 0.0004) < 1e-9);
  const busy = nodeMonth(u, 60, 60);
  assert.equal(busy.requests, MONTH_S / 60 + 60 * 720 * 2);
  assert.ok(busy.transferUsd > nodeMonth(u, 60, 1).transferUsd);
});

test("prefixLimitNodes and the CDN's origin bound", () => {
  const u = fleetUnits(fleet());
  assert.ok(u);
  assert.deepEqual(prefixLimitNodes(u, 2), { steady: 11_000, burst: 5_500 });
  const c = cdnHeadMonth(1000, 2, 1, 1);
  assert.equal(c.originGets, MONTH_S);
  assert.equal(c.cdnRequests, 500 * MONTH_S);
  // Fewer nodes than edges per TTL: the origin sees no more than the nodes send.
  assert.equal(cdnHeadMonth(2, 10, 1, 20).originGets, 0.2 * MONTH_S);
});

test("classifyRequest names the object and keeps the status", () => {
  assert.equal(classifyRequest("GET", "/b/site/.fansync/head.json", 304), "GET head 304");
  assert.equal(classifyRequest("GET", "/b/site/.fansync/journal/0000000012", 200), "GET journal 200");
  assert.equal(classifyRequest("GET", "/b/site/.fansync/manifests/12?x-id=GetObject", 200), "GET manifest 200");
  assert.equal(classifyRequest("PUT", "/b/site/.fansync/lease", 200), "PUT meta 200");
  assert.equal(classifyRequest("GET", "/b/site/a/b.html", 200), "GET content 200");
  assert.equal(classifyRequest("GET", "/b?list-type=2", 200), "LIST bucket 200");
  // An event-driven node's SQS calls (fleet-events) are named by their X-Amz-Target, not taken for a bucket POST.
  assert.equal(classifyRequest("POST", "/", 200, "AmazonSQS.ReceiveMessage"), "SQS ReceiveMessage 200");
});

const row = (toolId: string, walls: number[], measuredAt = "t0", cpu?: number): Row => ({
  key: "upload/10k",
  scenario: "S",
  toolId,
  tool: toolId,
  status: "ok",
  measuredAt,
  runs: walls.map((w, i) => ({ wallMs: w, requests: { PUT: 1000 }, bytesUp: 0, bytesDown: 0, run: i, ...(cpu === undefined ? {} : { cpuS: cpu }) })),
});

test("pairedRatios divides within each round, and says when rows come from different runs", () => {
  const p = pairedRatios(row("fansync", [10, 30, 12]), row("rclone", [20, 30, 6]));
  assert.deepEqual(p, { median: 1, min: 0.5, max: 2, n: 3, paired: true });
  const q = pairedRatios(row("fansync", [10, 30, 12]), row("rclone", [20, 30, 6], "t1"));
  assert.equal(q?.paired, false);
  assert.equal(q?.median, 12 / 20);
  assert.equal(pairedRatios(undefined, row("rclone", [1])), undefined);
});

test("cpuPer1k is CPU seconds per 1,000 requests, median over runs", () => {
  assert.equal(cpuPer1k(row("fansync", [1, 1], "t0", 2), "cpuS"), 2);
  assert.equal(cpuPer1k(row("fansync", [1]), "cpuS"), undefined);
});

test("fleetEventsSection: polling and events side by side, the head's GET rate compared, SQS counted apart", () => {
  const poll = fleet({ delaysMs: [1000, 2000] });
  const ev = fleet({
    mode: "events", intervalMs: 60_000, eventsVia: "a relay", delaysMs: [100, 200],
    requests: { "GET head 200": 1_000, "GET head 304": 600, "GET journal 200": 1_000, "GET content 200": 1_000, "SQS ReceiveMessage 200": 2_800, "SQS DeleteMessageBatch 200": 1_000 },
  });
  const md = fleetEventsSection(poll, ev);
  assert.match(md, /^\| polling 2\.00 s \| 10 \| 5\.00 \| 0\.000 \|/m);
  assert.match(md, /^\| events \(safety poll 60\.0 s\) \| 10 \| 0\.444 \| 1\.06 \|/m);
  assert.match(md, /The head's GET rate with events is 1\/11\.3 of polling's/);
  assert.match(md, /the head's event by a relay/);
  assert.match(fleetEventsSection(poll, undefined), /Not run \(BENCH_SCENARIOS=fleet-events/);
});
