/**
 * `sync --events` and `sync --on-apply` (issue 24): two two-way nodes with a 10-minute poll, each
 * with its own queue subscribed to the location's topic (S3 → SNS → SQS, on moto): a change written
 * on one reaches the other's docroot because the head's event wakes it; garbage in a queue changes
 * nothing; each node's --on-apply hook gets the other writer's changes (never its own) once; a
 * deleted queue is reported in the sync status and /metrics, and the node polls instead.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { SubscribeCommand } from "@aws-sdk/client-sns";
import { type CapturedChild, startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { createQueue, deleteQueue, eventClients, notifyTopic, probeEvents, sendMessages } from "../helpers/events.ts";
import { freePort } from "../helpers/s3-server.ts";
import { writeTree } from "../helpers/tree.ts";

process.env.FANSYNC_LOCALSTACK_SERVICES ??= "s3,sqs,sns";
const ctx = useServer();
let probed: Promise<string | undefined> | undefined;

/** Skip (saying why) on a server that delivers no S3 events to SQS. */
async function needsEvents(t: TestContext): Promise<boolean> {
  const why = await (probed ??= probeEvents(ctx.server));
  if (why) t.skip(why);
  return why === undefined;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, children: readonly CapturedChild[], timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${children.map((c) => `stdout:\n${c.out.stdout.slice(-3000)}\nstderr:\n${c.out.stderr.slice(-1000)}`).join("\n---\n")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const read = (f: string) => readFile(f, "utf8");

/** A hook's NDJSON as "generation op path" lines. */
async function hookLines(file: string): Promise<string[]> {
  const text = await read(file).catch(() => "");
  return text.split("\n").filter(Boolean).map((l) => {
    const j = JSON.parse(l) as { generation: number; op: string; path: string };
    return `${j.generation} ${j.op} ${j.path}`;
  });
}

interface SyncStatusDoc {
  status: string;
  generation: number;
  events?: { state: string; messages: number; lastError: string | null };
}

test("sync --events: a change on A reaches B with a 10-minute poll; garbage changes nothing; --on-apply gets the other writer's paths once; a deleted queue falls back to polling", async (t) => {
  if (!(await needsEvents(t))) return;
  const dir = ctx.tmp("sync-ev");
  const bucket = await ctx.server.bucket("sync-ev");
  const url = `s3://${bucket}/www`;
  const { sqs, sns } = eventClients(ctx.server);
  const qa = await createQueue(sqs, `fansync-sync-a-${Date.now()}`);
  const qb = await createQueue(sqs, `fansync-sync-b-${Date.now()}`);
  // One topic for the location's head, each node's queue subscribed to it.
  const topic = await notifyTopic(ctx.server, sns, bucket, "www/", qa.arn, `fansync-sync-ev-${Date.now()}`);
  await sns.send(new SubscribeCommand({ TopicArn: topic, Protocol: "sqs", Endpoint: qb.arn }));
  // The site exists before the nodes join.
  const seed = path.join(dir, "seed");
  await writeTree(seed, { "index.html": "one\n", "old.txt": "old\n" });
  expectCode(await ctx.cli(["push", seed, url, ...ctx.flags(path.join(dir, "state-seed"))]), 0);

  const nodes = ["a", "b"].map((name) => ({
    name,
    root: path.join(dir, name),
    hook: path.join(dir, `hook-${name}.ndjson`),
    status: path.join(dir, `status-${name}.json`),
    queue: name === "a" ? qa.url : qb.url,
  }));
  const portB = await freePort();
  const children = nodes.map((n) => startCli([
    "sync", n.root, url, ...ctx.flags(path.join(dir, `state-${n.name}`)), "--node-id", n.name, "--delay", "150ms", "--max-delay", "1s",
    "--interval", "10m", "--events", n.queue, "--status-file", n.status, "--on-apply", `cat >> '${n.hook}'`,
    ...(n.name === "b" ? ["--http", `127.0.0.1:${portB}`] : []),
  ]));
  const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]];
  const status = async (n: typeof a) => JSON.parse(await read(n.status)) as SyncStatusDoc;
  try {
    for (const n of nodes) await until(`${n.name} joined`, async () => (await read(path.join(n.root, "index.html"))) === "one\n", children);

    // A's change: only the head's event can bring it to B within the test (B polls every 10 minutes).
    await writeFile(path.join(a.root, "new.html"), "from a\n");
    await until("A's change on B", async () => (await read(path.join(b.root, "new.html"))) === "from a\n", children);
    const generation = (await until("B's status at A's generation", async () => {
      const st = await status(b);
      return st.generation >= 2 && st;
    }, children)).generation;

    // Garbage, a forged event and a flood in B's queue: runs that find the head unchanged, nothing more.
    const forged = JSON.stringify({ Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: bucket }, object: { key: "www/.fansync/head.json" } } }], generation: 999 });
    await sendMessages(sqs, qb.url, ["not json", forged, forged, ...Array.from({ length: 30 }, (_, i) => `flood ${i}`)]);
    await until("the garbage taken", async () => ((await status(b)).events?.messages ?? 0) >= 34, children);
    const st = await status(b);
    assert.equal(st.status, "OK");
    assert.equal(st.generation, generation, "messages never move a node past the head it read");
    assert.equal(st.events?.state, "listening");
    assert.deepEqual((await read(path.join(b.root, "new.html"))), "from a\n");

    // B deletes a file: A applies the deletion, woken by its own queue.
    await rm(path.join(b.root, "old.txt"));
    await until("B's delete on A", async () => (await read(path.join(a.root, "old.txt")).then(() => false, () => true)), children);
    const final = (await until("A at B's generation", async () => {
      const s = await status(a);
      return s.generation > generation && s;
    }, children)).generation;

    // Each hook got the other writer's changes, once each, and never the node's own.
    await until("A's hook ran for B's delete", async () => (await hookLines(a.hook)).includes(`${final} delete old.txt`), children);
    assert.deepEqual(await hookLines(a.hook), ["1 put index.html", "1 put old.txt", `${final} delete old.txt`]);
    assert.deepEqual(await hookLines(b.hook), ["1 put index.html", "1 put old.txt", `${generation} put new.html`]);

    // B's queue goes away: reported in its status and /metrics, and B polls instead (2 s fallback).
    await deleteQueue(sqs, qb.url);
    await until("B's queue reported as failing", async () => (await status(b)).events?.state === "failing", children, 60_000);
    await writeFile(path.join(a.root, "later.html"), "later\n");
    await until("A's change on B by the fallback poll", async () => (await read(path.join(b.root, "later.html"))) === "later\n", children);
    assert.match(await (await fetch(`http://127.0.0.1:${portB}/metrics`)).text(), /^fansync_events_listening 0$/m);
    const shown = await ctx.cli(["status", "--status-file", b.status, "--state-dir", path.join(dir, "state-b")]);
    assert.match(shown.stdout, /events FAILING since .*polling instead/);
  } finally {
    for (const c of children) c.kill("SIGTERM");
    for (const c of children) expectCode(await waitCli(c, 40_000), 0);
  }
  for (const c of children) assert.deepEqual(c.out.stdout.split("\n").filter((l) => l.includes('"level":50') && !l.includes("cannot read the event queue")), [], "no error logged but the deleted queue");
});
