/**
 * Events, not polling (issue 24), on a real server with SNS and SQS (moto): a node whose poll
 * interval is ten minutes still gets each change, because the bucket's notification for the head
 * wakes it; messages are hints only (garbage, duplicates and floods change nothing but latency); a
 * queue that goes away is reported and the node polls instead.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { ListSubscriptionsByTopicCommand, SubscribeCommand } from "@aws-sdk/client-sns";
import { GetQueueAttributesCommand, ListQueueTagsCommand } from "@aws-sdk/client-sqs";
import { type CapturedChild, startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { createQueue, deleteQueue, eventClients, notifyNothing, notifyQueue, notifyTopic, probeEvents, sendMessages } from "../helpers/events.ts";
import { freePort } from "../helpers/s3-server.ts";
import { writeTree } from "../helpers/tree.ts";

// A LocalStack the harness starts for this file serves SQS and SNS too (start.sh's default is S3 only).
process.env.FANSYNC_LOCALSTACK_SERVICES ??= "s3,sqs,sns";
const ctx = useServer();
let probed: Promise<string | undefined> | undefined;

/** Skip (saying why) on a server that delivers no S3 events to SQS (fauxqs, versitygw, LocalStack with S3 only). */
async function needsEvents(t: TestContext): Promise<boolean> {
  // Probed once, at the first test (the server is up by then).
  const why = await (probed ??= probeEvents(ctx.server));
  if (why) t.skip(why);
  return why === undefined;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, child?: CapturedChild): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${child ? `\nstdout:\n${child.out.stdout.slice(-3000)}\nstderr:\n${child.out.stderr.slice(-2000)}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const read = (f: string) => readFile(f, "utf8");

/** A master docroot published once, and a node following it with events and a 10-minute poll. */
async function setup(tag: string, wire: (bucket: string, queueArn: string) => Promise<void>) {
  const dir = ctx.tmp(tag);
  const bucket = await ctx.server.bucket(tag);
  const { sqs, sns } = eventClients(ctx.server);
  const q = await createQueue(sqs, `fansync-${tag}-${Date.now()}`);
  await wire(bucket, q.arn);
  const master = path.join(dir, "master");
  const node = path.join(dir, "node");
  const status = path.join(dir, "status.json");
  await writeTree(master, { "index.html": "one\n", "css/site.css": "a{}\n" });
  const push = async () => expectCode(await ctx.cli(["push", master, `s3://${bucket}/www`, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  await push();
  const port = await freePort();
  const daemon = startCli(["pull", `s3://${bucket}/www`, node, "--watch", "--events", q.url, "--interval", "10m", "--status-file", status, "--http", `127.0.0.1:${port}`, ...ctx.flags(path.join(dir, "state-n"))]);
  await until("the first pull", async () => (await read(path.join(node, "index.html"))) === "one\n", 30_000, daemon);
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return { dir, bucket, sqs, sns, q, master, node, status, push, daemon, metrics };
}

async function stop(daemon: CapturedChild): Promise<void> {
  daemon.kill("SIGTERM");
  const r = await waitCli(daemon, 30_000);
  expectCode(r, 0);
}

test("a node with events and a 10-minute poll gets each change (S3 → SQS)", async (t) => {
  if (!(await needsEvents(t))) return;
  const s = await setup("ev-sqs", (bucket, arn) => notifyQueue(ctx.server, bucket, "www/", arn));
  try {
    for (const v of ["two\n", "three\n"]) {
      await writeFile(path.join(s.master, "index.html"), v);
      await s.push();
      await until(`index.html = ${JSON.stringify(v)}`, async () => (await read(path.join(s.node, "index.html"))) === v, 30_000, s.daemon);
    }
    const st = JSON.parse(await read(s.status)) as { status: string; events: { state: string; messages: number } };
    assert.equal(st.status, "OK");
    assert.equal(st.events.state, "listening");
    assert.ok(st.events.messages >= 2, `messages taken: ${st.events.messages}`);
    const m = await s.metrics();
    assert.match(m, /^fansync_events_listening 1$/m);
    assert.match(m, /^fansync_events_messages_total [1-9]/m);
  } finally {
    await stop(s.daemon);
  }
});

test("S3 → SNS → SQS wakes the node too, and garbage, duplicates and a flood change nothing but latency", async (t) => {
  if (!(await needsEvents(t))) return;
  const s = await setup("ev-sns", async (bucket, arn) => void (await notifyTopic(ctx.server, eventClients(ctx.server).sns, bucket, "www/", arn, `fansync-ev-${Date.now()}`)));
  try {
    await writeFile(path.join(s.master, "index.html"), "two\n");
    await s.push();
    await until("the change through SNS", async () => (await read(path.join(s.node, "index.html"))) === "two\n", 30_000, s.daemon);
    // Garbage, a forged "new generation" and a flood: at most runs that find nothing new.
    const forged = JSON.stringify({ Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: s.bucket }, object: { key: "www/.fansync/head.json" } } }], generation: 999 });
    await sendMessages(s.sqs, s.q.url, ["not json", "", forged, forged, ...Array.from({ length: 150 }, (_, i) => `flood ${i}`)].filter((b) => b !== ""));
    await until("the flood taken", async () => {
      const st = JSON.parse(await read(s.status)) as { events: { messages: number } };
      return st.events.messages >= 153;
    }, 60_000, s.daemon);
    const st = JSON.parse(await read(s.status)) as { status: string; generation: number };
    assert.equal(st.status, "OK");
    assert.equal(st.generation, 2, "messages never move a node past the head it read");
    assert.equal(await read(path.join(s.node, "index.html")), "two\n");
    // Nothing overlapped: every run took the lock in turn, and the node still follows the head.
    await writeFile(path.join(s.master, "css/site.css"), "b{}\n");
    await s.push();
    await until("the change after the flood", async () => (await read(path.join(s.node, "css/site.css"))) === "b{}\n", 30_000, s.daemon);
  } finally {
    await stop(s.daemon);
  }
  const logs = s.daemon.out.stdout.split("\n").filter((l) => l.includes('"level":50'));
  assert.deepEqual(logs, [], "no error logged for garbage messages");
});

test("a lost event costs latency only: the poll still brings the change", async (t) => {
  if (!(await needsEvents(t))) return;
  const dir = ctx.tmp("ev-lost");
  const bucket = await ctx.server.bucket("ev-lost");
  const { sqs } = eventClients(ctx.server);
  const q = await createQueue(sqs, `fansync-lost-${Date.now()}`);
  // No notification at all: every event is lost.
  await notifyNothing(ctx.server, bucket);
  const master = path.join(dir, "master");
  const node = path.join(dir, "node");
  await writeTree(master, { "index.html": "one\n" });
  expectCode(await ctx.cli(["push", master, `s3://${bucket}/www`, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  const daemon = startCli(["pull", `s3://${bucket}/www`, node, "--watch", "--events", q.url, "--interval", "1s", ...ctx.flags(path.join(dir, "state-n"))]);
  try {
    await until("the first pull", async () => (await read(path.join(node, "index.html"))) === "one\n", 30_000, daemon);
    await writeFile(path.join(master, "index.html"), "two\n");
    expectCode(await ctx.cli(["push", master, `s3://${bucket}/www`, ...ctx.flags(path.join(dir, "state-m"))]), 0);
    await until("the change by polling", async () => (await read(path.join(node, "index.html"))) === "two\n", 30_000, daemon);
  } finally {
    await stop(daemon);
  }
});

test("a deleted queue is reported and the node falls back to polling", async (t) => {
  if (!(await needsEvents(t))) return;
  const s = await setup("ev-gone", (bucket, arn) => notifyQueue(ctx.server, bucket, "www/", arn));
  try {
    await deleteQueue(s.sqs, s.q.url);
    await until("the queue reported as failing", async () => s.daemon.out.stdout.includes("cannot read the event queue"), 60_000, s.daemon);
    await writeFile(path.join(s.master, "index.html"), "two\n");
    await s.push();
    // The poll interval is 10 minutes: only the fallback poll can bring this change.
    await until("the change by the fallback poll", async () => (await read(path.join(s.node, "index.html"))) === "two\n", 30_000, s.daemon);
    const st = JSON.parse(await read(s.status)) as { status: string; events: { state: string; lastError: string } };
    assert.equal(st.status, "OK", "the node still serves and follows the head");
    assert.equal(st.events.state, "failing");
    assert.match(await s.metrics(), /^fansync_events_listening 0$/m);
    assert.match(st.events.lastError, /queue/i);
    const shown = await ctx.cli(["status", "--status-file", s.status, "--state-dir", path.join(s.dir, "state-n")]);
    assert.match(shown.stdout, /events FAILING since .*polling instead/);
  } finally {
    await stop(s.daemon);
  }
});

test("events setup + register make a working queue; check says so; unregister removes it", async (t) => {
  if (!(await needsEvents(t))) return;
  const dir = ctx.tmp("ev-reg");
  const bucket = await ctx.server.bucket("ev-reg");
  const loc = `s3://${bucket}/www`;
  const common = ["--endpoint-url", ctx.server.endpoint, "--log-format", "json"];
  const setup = await ctx.cli(["events", "setup", loc, ...common]);
  expectCode(setup, 0);
  const topic = setup.stdout.trim();
  assert.match(topic, /^arn:aws:sns:/);
  const reg = await ctx.cli(["events", "register", "--topic", topic, "--queue-name", `node-${Date.now()}`, ...common]);
  expectCode(reg, 0);
  const queue = reg.stdout.trim();
  assert.match(queue, /^https?:\/\//);
  const master = path.join(dir, "master");
  const node = path.join(dir, "node");
  await writeTree(master, { "index.html": "one\n" });
  expectCode(await ctx.cli(["push", master, `${loc}`, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  const chk = await ctx.cli(["events", "check", loc, "--queue", queue, ...common]);
  expectCode(chk, 0);
  assert.match(chk.stdout, /^OK +notification/m);
  assert.match(chk.stdout, /^OK +subscription/m);
  assert.match(chk.stdout, /^OK +round trip/m);
  // The same checks from doctor, after its own.
  const doc = await ctx.cli(["doctor", loc, "--events", queue, "--no-write", ...common]);
  expectCode(doc, 0);
  assert.match(doc.stdout, /^events \(/m);
  assert.match(doc.stdout, /^OK +subscription/m);
  const daemon = startCli(["pull", loc, node, "--watch", "--events", queue, "--interval", "10m", ...ctx.flags(path.join(dir, "state-n"))]);
  try {
    await until("the first pull", async () => (await read(path.join(node, "index.html"))) === "one\n", 30_000, daemon);
    await writeFile(path.join(master, "index.html"), "two\n");
    expectCode(await ctx.cli(["push", master, loc, ...ctx.flags(path.join(dir, "state-m"))]), 0);
    await until("the change through the registered queue", async () => (await read(path.join(node, "index.html"))) === "two\n", 30_000, daemon);
  } finally {
    await stop(daemon);
  }
  expectCode(await ctx.cli(["events", "unregister", "--queue", queue, ...common]), 0);
  const after = await ctx.cli(["events", "check", loc, "--queue", queue, ...common]);
  expectCode(after, 4);
  assert.match(after.stdout, /^FAIL +queue/m);
  const docAfter = await ctx.cli(["doctor", loc, "--events", queue, "--no-write", ...common]);
  expectCode(docAfter, 4);
  assert.match(docAfter.stderr, /events queue: cannot read/);
});

test("replicate --watch --events: a region follows the primary's head event with a 10-minute poll", async (t) => {
  if (!(await needsEvents(t))) return;
  const dir = ctx.tmp("ev-repl");
  const [primary, region] = await Promise.all([ctx.server.bucket("ev-prim"), ctx.server.bucket("ev-region")]);
  const { sqs } = eventClients(ctx.server);
  const q = await createQueue(sqs, `fansync-repl-${Date.now()}`);
  await notifyQueue(ctx.server, primary, "www/", q.arn);
  const master = path.join(dir, "master");
  await writeTree(master, { "index.html": "one\n" });
  const push = async () => expectCode(await ctx.cli(["push", master, `s3://${primary}/www`, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  await push();
  const daemon = startCli(["replicate", `s3://${primary}/www`, `s3://${region}/www`, "--watch", "--events", q.url, "--interval", "10m", ...ctx.flags(path.join(dir, "state-r"))]);
  const regionGeneration = async () => {
    const { readHeadDoc } = await import("../helpers/s3.ts");
    return (await readHeadDoc(ctx.server.client, region, "www/")).generation as number;
  };
  try {
    await until("the region at generation 1", async () => (await regionGeneration()) === 1, 30_000, daemon);
    await writeFile(path.join(master, "index.html"), "two\n");
    await push();
    await until("the region at generation 2", async () => (await regionGeneration()) === 2, 30_000, daemon);
  } finally {
    await stop(daemon);
  }
});

test("--events without --watch is a usage error (exit 2), before anything runs", async () => {
  const dir = ctx.tmp("ev-usage");
  const r = await ctx.cli(["pull", "s3://nowhere-bucket/www", path.join(dir, "node"), "--events", "http://127.0.0.1:9/q", ...ctx.flags(path.join(dir, "state"))]);
  expectCode(r, 2);
  assert.match(r.stderr, /--events wakes a daemon: it needs --watch/);
  const rr = await ctx.cli(["replicate", "s3://nowhere-bucket/www", "s3://nowhere-region/www", "--events", "http://127.0.0.1:9/q", ...ctx.flags(path.join(dir, "state"))]);
  expectCode(rr, 2);
});

test("self-registered queues expire: a running node pushes its expiry forward; prune deletes only the expired ones, with their subscriptions", async (t) => {
  if (!(await needsEvents(t))) return;
  const dir = ctx.tmp("ev-prune");
  const bucket = await ctx.server.bucket("ev-prune");
  const loc = `s3://${bucket}/www`;
  const common = ["--endpoint-url", ctx.server.endpoint, "--log-format", "json"];
  const { sqs, sns } = eventClients(ctx.server);
  const setup = await ctx.cli(["events", "setup", loc, ...common]);
  expectCode(setup, 0);
  const topic = setup.stdout.trim();
  const register = async (name: string, expireAfter: string) => {
    const r = await ctx.cli(["events", "register", "--topic", topic, "--queue-name", `${name}-${Date.now()}`, "--expire-after", expireAfter, ...common]);
    expectCode(r, 0);
    return { url: r.stdout.trim(), stderr: r.stderr };
  };
  const expires = async (url: string) => (await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags?.["fansync-expires"];
  const stale = await register("stale", "1s");
  assert.match(stale.stderr, /--expire-after 1s is under 2h/);
  const fresh = await register("fresh", "7d");
  const running = await register("running", "20s");
  // A queue subscribed by hand (or by the CDK stack) has no expiry: never pruned.
  const manual = await createQueue(sqs, `manual-${Date.now()}`);
  await sns.send(new SubscribeCommand({ TopicArn: topic, Protocol: "sqs", Endpoint: manual.arn }));
  const before = await expires(running.url);
  await new Promise((r) => setTimeout(r, 1500));
  const master = path.join(dir, "master");
  await writeTree(master, { "index.html": "one\n" });
  expectCode(await ctx.cli(["push", master, loc, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  const daemon = startCli(["pull", loc, path.join(dir, "node"), "--watch", "--events", running.url, "--interval", "10m", ...ctx.flags(path.join(dir, "state-n"))]);
  try {
    // The node pushes its queue's expiry forward as it starts (then hourly).
    await until("the running node's expiry pushed forward", async () => {
      const now = await expires(running.url);
      return now !== undefined && before !== undefined && Date.parse(now) > Date.parse(before);
    }, 30_000, daemon);
    // `events check` says a queue expired before prune deletes it, and when a live one expires.
    const chk = await ctx.cli(["events", "check", loc, "--queue", stale.url, ...common]);
    expectCode(chk, 0);
    assert.match(chk.stdout, /^WARN +queue .* expired .*fansync events prune/m);
    assert.match((await ctx.cli(["events", "check", loc, "--queue", fresh.url, ...common])).stdout, /^OK +queue .*, expires \d{4}-/m);
    const pruned = await ctx.cli(["events", "prune", "--topic", topic, ...common]);
    expectCode(pruned, 0);
    const lines = pruned.stdout.trim().split("\n");
    assert.deepEqual(lines.filter((l) => l.startsWith("deleted")).map((l) => l.split(/\s+/)[1]), [stale.url]);
    for (const u of [fresh.url, running.url, manual.url]) assert.ok(lines.some((l) => l.startsWith("kept") && l.includes(u)), `${u} kept:\n${pruned.stdout}`);
    // The expired queue is gone with its subscription; the others still are subscribed and readable.
    await assert.rejects(sqs.send(new GetQueueAttributesCommand({ QueueUrl: stale.url, AttributeNames: ["QueueArn"] })));
    const subs = (await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topic }))).Subscriptions ?? [];
    assert.equal(subs.filter((s) => s.Protocol === "sqs").length, 3);
    assert.ok(!subs.some((s) => s.Endpoint?.includes("stale-")));
    // The running node still gets each change through its queue.
    await writeFile(path.join(master, "index.html"), "two\n");
    expectCode(await ctx.cli(["push", master, loc, ...ctx.flags(path.join(dir, "state-m"))]), 0);
    await until("the change through the kept queue", async () => (await read(path.join(dir, "node", "index.html"))) === "two\n", 30_000, daemon);
  } finally {
    await stop(daemon);
  }
  const bad = await ctx.cli(["events", "register", "--topic", topic, "--expire-after", "soon", ...common]);
  expectCode(bad, 2);
  assert.match(bad.stderr, /--expire-after "soon": expected a duration/);
});
