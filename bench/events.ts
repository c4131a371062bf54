// Events vs polling (issue 24): change → served on every node, and what an idle node costs, with
// N real `fansync pull --watch` nodes on moto (which serves S3, SNS and SQS on one endpoint).
//   polling: --interval 2s (the default)
//   events:  --events QUEUE_URL (one queue per node, subscribed to the bucket's head topic; the
//            poll stays as the safety net at its 60 s default)
// A change is one new file published by a one-shot `fansync push` (through a proxy of its own, not
// counted with the nodes); it is timed from the moment the server answered the push's PUT of the
// head until every node holds the file's bytes (checked every 5 ms). The nodes talk to the server through a counting proxy (S3 and SQS requests
// alike), so "requests per idle node-hour" counts everything a node sends while nothing changes.
//   node bench/events.ts     BENCH_EVENTS_CHANGES=50 BENCH_EVENTS_NODES=3 BENCH_EVENTS_IDLE_S=60
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PutBucketNotificationConfigurationCommand } from "@aws-sdk/client-s3";
import { CreateTopicCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { diffCounts, startCountingProxy, totalRequests } from "./lib/counting-proxy.ts";
import { baseEnv } from "./lib/peers.ts";
import { arrived } from "./lib/propagation.ts";
import { startS3Server } from "./lib/server.ts";
import { percentile } from "./lib/stats.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const changes = Number(process.env.BENCH_EVENTS_CHANGES ?? 50);
const nodes = Number(process.env.BENCH_EVENTS_NODES ?? 3);
const idleSeconds = Number(process.env.BENCH_EVENTS_IDLE_S ?? 60);
const scratch = mkdtempSync(join(tmpdir(), "fansync-bench-events-"));
const env = baseEnv();
const bin = join(repo, "bin/fansync.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Mode = "polling 2s" | "events";
type Row = { mode: Mode; samplesMs: number[]; lost: number; idleRequestsPerNodeHour: number; idleByKind: Record<string, number> };

async function run(cmd: string[], extraEnv: Record<string, string> = {}): Promise<void> {
  const child = spawn(process.execPath, cmd, { env: { ...env, ...extraEnv }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("close", r));
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err.slice(-2000)}`);
}

async function measure(mode: Mode, endpoint: string, bucket: string): Promise<Row> {
  const dir = join(scratch, mode.replace(/\W+/g, "-"));
  const master = join(dir, "master");
  mkdirSync(master, { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(master, `page-${i}.html`), `<h1>${i}</h1>\n`);
  const url = `s3://${bucket}/www`;
  // The writer's own proxy tells when the head was written (the change is published from then on).
  let headAt = 0;
  const writerProxy = await startCountingProxy(endpoint, (r) => {
    if (r.method === "PUT" && r.url.split("?")[0]?.endsWith("/.fansync/head.json") && r.status === 200) headAt = r.endMs;
  });
  const push = () => run([bin, "push", master, url, "--endpoint-url", writerProxy.endpoint, "--state-dir", join(dir, "state-m"), "--log-level", "warn", "--no-progress"]);
  await push();
  const aws = { endpoint, region: "us-east-1", credentials: { accessKeyId: "bench", secretAccessKey: "benchsecret" } };
  const queues: string[] = [];
  if (mode === "events") {
    const sqs = new SQSClient(aws);
    const sns = new SNSClient(aws);
    const topic = (await sns.send(new CreateTopicCommand({ Name: `bench-${bucket}` }))).TopicArn as string;
    for (let n = 0; n < nodes; n++) {
      const q = (await sqs.send(new CreateQueueCommand({ QueueName: `bench-${bucket}-${n}` }))).QueueUrl as string;
      const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: q, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn as string;
      await sns.send(new SubscribeCommand({ TopicArn: topic, Protocol: "sqs", Endpoint: arn }));
      queues.push(q);
    }
    const { S3Client } = await import("@aws-sdk/client-s3");
    await new S3Client({ ...aws, forcePathStyle: true }).send(new PutBucketNotificationConfigurationCommand({
      Bucket: bucket,
      NotificationConfiguration: { TopicConfigurations: [{ TopicArn: topic, Events: ["s3:ObjectCreated:*"], Filter: { Key: { FilterRules: [{ Name: "prefix", Value: "www/.fansync/" }, { Name: "suffix", Value: "head.json" }] } } }] },
    }));
  }
  const proxy = await startCountingProxy(endpoint);
  const daemons: ChildProcess[] = [];
  const docroots: string[] = [];
  try {
    for (let n = 0; n < nodes; n++) {
      const docroot = join(dir, `node-${n}`);
      docroots.push(docroot);
      const args = [bin, "pull", url, docroot, "--watch", "--endpoint-url", proxy.endpoint, "--state-dir", join(dir, `state-${n}`), "--log-level", "warn", "--no-progress"];
      if (mode === "events") args.push("--events", queues[n] as string);
      else args.push("--interval", "2s");
      daemons.push(spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "inherit"] }));
    }
    // Warm: every node holds the base tree.
    const first = Buffer.from("<h1>19</h1>\n");
    for (const d of docroots) while (!(await arrived(join(d, "page-19.html"), first))) await sleep(50);
    await sleep(2000);
    const before = proxy.snapshot();
    await sleep(idleSeconds * 1000);
    const idle = diffCounts(proxy.snapshot(), before);
    const row: Row = { mode, samplesMs: [], lost: 0, idleRequestsPerNodeHour: (totalRequests(idle) / nodes) * (3600 / idleSeconds), idleByKind: idle.requests };
    for (let i = 0; i < changes; i++) {
      const rel = `new-${i}.html`;
      const body = Buffer.from(`<p>change ${i} ${Date.now()}</p>\n`);
      writeFileSync(join(master, rel), body);
      headAt = 0;
      // Watched while the push runs: a node may hold the file before the push process has exited.
      const pushed = push();
      const started = Date.now();
      const pending = new Set(docroots);
      let last = 0;
      while (pending.size > 0 && Date.now() - started < 30_000) {
        for (const d of [...pending]) {
          if (await arrived(join(d, rel), body)) {
            pending.delete(d);
            last = Date.now();
          }
        }
        if (pending.size > 0) await sleep(5);
      }
      await pushed;
      if (pending.size === 0 && headAt > 0) row.samplesMs.push(Math.max(0, last - headAt));
      else row.lost++;
      process.stderr.write(`${mode} ${i + 1}/${changes}: ${pending.size === 0 ? `${Math.round(row.samplesMs.at(-1) ?? 0)} ms` : "LOST"}\n`);
      // Changes apart from each other: each measures one change travelling alone (and, for
      // polling, lands anywhere in the 2 s cycle).
      await sleep(500 + Math.floor(Math.random() * 1500));
    }
    return row;
  } finally {
    for (const d of daemons) d.kill("SIGTERM");
    await Promise.all(daemons.map((d) => new Promise((r) => (d.exitCode !== null ? r(null) : d.once("exit", r)))));
    await proxy.close();
    await writerProxy.close();
  }
}

const server = await startS3Server("moto", ["bench-poll", "bench-events"]);
try {
  const rows = [await measure("polling 2s", server.endpoint, "bench-poll"), await measure("events", server.endpoint, "bench-events")];
  const f = (x: number) => `${Math.round(x)} ms`;
  console.log(`\nChange → served on all ${nodes} nodes (moto, ${changes} changes each; from the head's PUT answered until every node holds the file), and an idle node's requests (${idleSeconds} s window through a counting proxy, S3 and SQS):\n`);
  console.log("| mode | p50 | p99 | max | lost | requests per idle node-hour |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    const s = [...r.samplesMs].sort((a, b) => a - b);
    console.log(`| ${r.mode} | ${s.length ? f(percentile(s, 50)) : "-"} | ${s.length ? f(percentile(s, 99)) : "-"} | ${s.length ? f(s[s.length - 1] as number) : "-"} | ${r.lost} | ${Math.round(r.idleRequestsPerNodeHour)} (${Object.entries(r.idleByKind).map(([k, v]) => `${k} ${v}`).join(", ")}) |`);
  }
  const [p, e] = rows as [Row, Row];
  if (e.idleRequestsPerNodeHour > 0) console.log(`\nidle requests, events / polling: 1/${(p.idleRequestsPerNodeHour / e.idleRequestsPerNodeHour).toFixed(1)}`);
} finally {
  await server.stop();
  rmSync(scratch, { recursive: true, force: true });
}
