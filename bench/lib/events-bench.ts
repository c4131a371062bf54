// Events vs polling (issue 24): change → served on every node, and what an idle node costs, with
// N real `fansync pull --watch` nodes on moto (which serves S3, SNS and SQS on one endpoint).
//   polling: --interval 2s (the default)
//   events:  --events QUEUE_URL (one queue per node, subscribed to the bucket's head topic; the
//            poll stays as the safety net at its 60 s default)
// A change is one new file published by a one-shot `fansync push` (through a proxy of its own, not
// counted with the nodes); it is timed from the moment the server answered the push's PUT of the
// head until every node holds the file's bytes (checked every 5 ms). The nodes talk to the server
// through a counting proxy (S3 and SQS requests alike), so "requests per idle node-hour" counts
// everything a node sends while nothing changes. Run by bench/run.ts (BENCH_SCENARIOS=events) and
// by bench/events.ts alone; the report's section is eventsSection (lib/report.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { diffCounts, startCountingProxy, totalRequests } from "./counting-proxy.ts";
import { setupHeadEvents } from "./head-events.ts";
import { arrived } from "./propagation.ts";
import { startS3Server } from "./server.ts";

/** What one events bench run takes. */
export type EventsBenchOptions = {
  /** The checkout whose bin/fansync.js runs. */
  repo: string;
  workDir: string;
  changes: number;
  nodes: number;
  idleSeconds: number;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
};

/** One mode's figures. */
export type EventsModeRow = {
  mode: "polling 2s" | "events";
  /** Per change: the head's PUT answered → the file on every node. */
  samplesMs: number[];
  lost: number;
  idleRequestsPerNodeHour: number;
  /** Requests in the idle window, all nodes, by kind. */
  idleByKind: Record<string, number>;
};

/** The events row of the report. */
export type EventsResult = {
  status: "ok" | "failed";
  note?: string;
  nodes: number;
  changes: number;
  idleSeconds: number;
  rows: EventsModeRow[];
};

/** Sizes from BENCH_EVENTS_* (defaults: the issue's 50 changes, 3 nodes, a minute idle; the small bench: 10, 3, 20 s). */
export function eventsSettingsFromEnv(scale: string): Pick<EventsBenchOptions, "changes" | "nodes" | "idleSeconds"> {
  const full = scale === "full";
  return {
    changes: Number(process.env.BENCH_EVENTS_CHANGES ?? (full ? 50 : 10)),
    nodes: Number(process.env.BENCH_EVENTS_NODES ?? 3),
    idleSeconds: Number(process.env.BENCH_EVENTS_IDLE_S ?? (full ? 60 : 20)),
  };
}

type Mode = EventsModeRow["mode"];
type Row = EventsModeRow;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Both modes, polling first, on a moto of their own. Never throws: a failure becomes the status. */
export async function runEventsBench(o: EventsBenchOptions): Promise<EventsResult> {
  const result: EventsResult = { status: "ok", nodes: o.nodes, changes: o.changes, idleSeconds: o.idleSeconds, rows: [] };
  rmSync(o.workDir, { recursive: true, force: true });
  mkdirSync(o.workDir, { recursive: true });
  let server: Awaited<ReturnType<typeof startS3Server>> | undefined;
  try {
    server = await startS3Server("moto", ["bench-poll", "bench-events"]);
    result.rows.push(await measure(o, "polling 2s", server.endpoint, "bench-poll"));
    result.rows.push(await measure(o, "events", server.endpoint, "bench-events"));
  } catch (err) {
    result.status = "failed";
    result.note = (err as Error).message.slice(0, 300);
  } finally {
    await server?.stop();
    rmSync(o.workDir, { recursive: true, force: true });
  }
  return result;
}

async function run(o: EventsBenchOptions, cmd: string[]): Promise<void> {
  const child = spawn(process.execPath, cmd, { env: o.env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("close", r));
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err.slice(-2000)}`);
}

async function measure(o: EventsBenchOptions, mode: Mode, endpoint: string, bucket: string): Promise<Row> {
  const { nodes, changes, idleSeconds, env } = o;
  const bin = join(o.repo, "bin/fansync.js");
  const dir = join(o.workDir, mode.replace(/\W+/g, "-"));
  const master = join(dir, "master");
  mkdirSync(master, { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(master, `page-${i}.html`), `<h1>${i}</h1>\n`);
  const url = `s3://${bucket}/www`;
  // The writer's own proxy tells when the head was written (the change is published from then on).
  let headAt = 0;
  const writerProxy = await startCountingProxy(endpoint, (r) => {
    if (r.method === "PUT" && r.url.split("?")[0]?.endsWith("/.fansync/head.json") && r.status === 200) headAt = r.endMs;
  });
  const push = () => run(o, [bin, "push", master, url, "--endpoint-url", writerProxy.endpoint, "--state-dir", join(dir, "state-m"), "--log-level", "warn", "--no-progress"]);
  await push();
  // moto delivers the bucket's notification: S3 → SNS → one queue per node.
  const queues = mode === "events" ? (await setupHeadEvents({ endpoint, bucket, prefix: "www/", nodes, s3Notifications: true, name: `bench-${bucket}` })).queues : [];
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
      o.log(`${mode} ${i + 1}/${changes}: ${pending.size === 0 ? `${Math.round(row.samplesMs.at(-1) ?? 0)} ms` : "LOST"}`);
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
