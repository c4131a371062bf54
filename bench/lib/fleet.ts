// The simulated fleet: hundreds of real pullers against one local server while a master publishes a
// change every few seconds. What it measures is what a fleet costs: requests per node per hour by
// type, the head's request rate, propagation delay across the fleet, the server's CPU per node.
//
// Shape, and why (2 cores shared with the server and the master):
// - Pullers are the real `fansync pull --watch` (the command's own pull() from the built fansync,
//   config resolved as the CLI does), many per process: FLEET_WORKERS processes (lib/fleet-worker.ts)
//   each host nodes / workers of them. A process per node would spend the machine on V8 start-up and
//   per-process memory, which is not what is being measured; each node still has its own S3 client
//   (its own connections), docroot, state directory and lock, so it does all the I/O a node does.
// - Each node has its own small docroot (FLEET_BASE_FILES files), not a shared read-only one:
//   downloading, verifying and renaming each changed file is part of what a change costs per node.
// - The master is `fansync watch --delay 100ms` in its own process, through its own counting proxy,
//   so its requests never mix with the fleet's. Each change is one new file (2–8 KB).
// - The poll interval is fansync's default (2 s) unless FLEET_INTERVAL_MS says otherwise: at that
//   rate a few minutes hold ~100 polls per node, enough for the per-poll and per-change figures the
//   cost model scales to other intervals; nothing is time-compressed.
// - With `events` (the fleet-events scenario, issue 24) each node is `pull --watch --events QUEUE`
//   instead, its own SQS queue subscribed to the head's topic, the poll at its 60 s default as the
//   safety net: a node is woken by a message, not by its poll. The head's event comes from the
//   bucket's notification on moto, from a relay on the master's proxy on fauxqs (whose S3 sends
//   none); lib/head-events.ts makes either. SQS calls go through the fleet's proxy and are counted.
import { fork, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startCountingProxy, type ProxiedRequest } from "./counting-proxy.ts";
import { setupHeadEvents } from "./head-events.ts";
import { readCpuSeconds, readPeakRssKb, runMeasured } from "./measure.ts";
import type { FleetResult } from "./results.ts";
import { startS3Server, type ServerKind, waitExit } from "./server.ts";
import { contentFor, hash32, planTree, prng, writeTree, type TreeSpec } from "./tree.ts";
import type { ParentMessage, WorkerInit, WorkerMessage } from "./fleet-worker.ts";

const here = dirname(fileURLToPath(import.meta.url));

/** Fleet size and pace (FLEET_* variables; see bench/README.md). */
export type FleetSettings = { nodes: number; workers: number; intervalMs: number; publishEveryMs: number; durationMs: number; baseFiles: number };

/** Everything runFleet needs from the orchestrator. */
export type FleetOptions = FleetSettings & {
  repo: string;
  workDir: string;
  serverKind: ServerKind;
  serverLabel: string;
  bucket: string;
  prefix: string;
  seed: number;
  env: Record<string, string>;
  logPath: string;
  log: (msg: string) => void;
  fansyncOk: boolean;
  /** Nodes woken by events (their own SQS queues) instead of polling at intervalMs. */
  events?: boolean;
};

/** The safety poll of a node with events: fansync's default with --events. */
const EVENTS_INTERVAL_MS = 60_000;

const num = (v: string | undefined, dflt: number): number => {
  const n = Number(v);
  return v !== undefined && v !== "" && Number.isFinite(n) && n > 0 ? n : dflt;
};

/** FLEET_NODES, FLEET_WORKERS, FLEET_INTERVAL_MS, FLEET_PUBLISH_MS, FLEET_DURATION_S, FLEET_BASE_FILES. */
export function fleetSettingsFromEnv(scale: string): FleetSettings {
  const e = process.env;
  return {
    nodes: Math.round(num(e.FLEET_NODES, scale === "full" ? 300 : 100)),
    workers: Math.round(num(e.FLEET_WORKERS, 2)),
    intervalMs: num(e.FLEET_INTERVAL_MS, 2000),
    publishEveryMs: num(e.FLEET_PUBLISH_MS, 5000),
    durationMs: num(e.FLEET_DURATION_S, scale === "full" ? 180 : 60) * 1000,
    baseFiles: Math.round(num(e.FLEET_BASE_FILES, 20)),
  };
}

/**
 * The type of a request as the cost model needs it: method, what the key is (the head, a journal,
 * a manifest, other control objects, site content, a bucket listing) and the status.
 */
export function classifyRequest(method: string, url: string, status: number, target?: string): string {
  // An SQS call (AWS JSON protocol: POST / with X-Amz-Target) of an event-driven node.
  if (target !== undefined) return `SQS ${target.split(".").pop() ?? target} ${status}`;
  const path = url.split("?", 1)[0] ?? "/";
  const segments = path.split("/").filter((s) => s !== "");
  if (segments.length <= 1) return `${method === "GET" ? "LIST" : method} bucket ${status}`;
  const what = /\/\.fansync\/head\.json$/.test(path)
    ? "head"
    : path.includes("/.fansync/journal")
      ? "journal"
      : path.includes("/.fansync/manifest")
        ? "manifest"
        : path.includes("/.fansync/")
          ? "meta"
          : "content";
  return `${method} ${what} ${status}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** Runs the fleet. Never throws: a failure becomes the result's status and note. */
export async function runFleet(o: FleetOptions): Promise<FleetResult> {
  const result: FleetResult = {
    status: "ok",
    mode: o.events ? "events" : "polling",
    nodes: o.nodes,
    workers: Math.min(o.workers, o.nodes),
    intervalMs: o.events ? EVENTS_INTERVAL_MS : o.intervalMs,
    publishEveryMs: o.publishEveryMs,
    durationMs: 0,
    publishes: 0,
    baseFiles: o.baseFiles,
    requests: {},
    bytesDown: 0,
    masterRequests: {},
    delaysMs: [],
    endToEndMs: [],
    missed: 0,
    serverCpuS: 0,
    proxyCpuS: 0,
    pullersCpuS: 0,
    workerRssKb: [],
    server: o.serverLabel,
  };
  if (!o.fansyncOk) return { ...result, status: "not built", note: "fansync is not built" };
  rmSync(o.workDir, { recursive: true, force: true });
  const master = join(o.workDir, "master");
  mkdirSync(master, { recursive: true });
  mkdirSync(dirname(o.logPath), { recursive: true });
  writeFileSync(o.logPath, "");
  const spec: TreeSpec = { name: "fleet-base", files: o.baseFiles, dirs: 2, minSize: 1024, maxSize: 4096, bigFiles: 0, bigMinSize: 0, bigMaxSize: 0, unicode: false };
  const base = planTree(spec, o.seed);
  writeTree(master, base, o.seed);

  // Counting starts once every node holds the base tree: the first full pull is not the steady state.
  let measuring = false;
  const headPuts: number[] = [];
  const count = (into: Record<string, number>) => (r: ProxiedRequest) => {
    if (!measuring) return;
    const k = classifyRequest(r.method, r.url, r.status, r.target);
    into[k] = (into[k] ?? 0) + 1;
  };
  const countFleet = count(result.requests);
  const countMaster = count(result.masterRequests);
  const server = await startS3Server(o.serverKind, [o.bucket]);
  // Events: one long poll held open per node, on top of the runs' own requests.
  const fleetProxy = await startCountingProxy(server.endpoint, countFleet, 0, o.events ? 256 + o.nodes : 256);
  let relay: (() => void) | undefined;
  const masterProxy = await startCountingProxy(server.endpoint, (r) => {
    countMaster(r);
    // The head's PUT being answered is the moment a generation is published.
    if (r.method === "PUT" && r.status < 300 && /\/\.fansync\/head\.json$/.test(r.url.split("?", 1)[0] ?? "")) {
      headPuts.push(r.endMs);
      relay?.();
    }
  });
  const bin = join(o.repo, "bin/fansync.js");
  const url = `s3://${o.bucket}/${o.prefix}`;
  const logStream = createWriteStream(o.logPath, { flags: "a" });
  const children: ChildProcess[] = [];
  const workers: ChildProcess[] = [];
  const arrivals = new Map<number, Map<number, number>>();
  const probeMs = new Map<number, number>();
  try {
    const first = await runMeasured({ cmd: bin, args: ["push", master, url, "--endpoint-url", masterProxy.endpoint, "--state-dir", join(o.workDir, "master-state"), "--log-level", "warn"], env: o.env }, o.logPath, 300_000);
    if (first.exitCode !== 0) throw new Error(`initial push failed (exit ${first.exitCode}): ${first.tail.slice(-200)}`);
    let queues: string[] | undefined;
    if (o.events) {
      const ev = await setupHeadEvents({ endpoint: server.endpoint, bucket: o.bucket, prefix: o.prefix.replace(/\/?$/, "/"), nodes: o.nodes, s3Notifications: o.serverKind === "moto", name: "fleet-head" });
      queues = ev.queues;
      relay = ev.relay;
      result.eventsVia = ev.via;
      o.log(`fleet: ${queues.length} event queues, the head's event by ${ev.via}`);
    }
    const watch = spawn(bin, ["watch", master, url, "--endpoint-url", masterProxy.endpoint, "--state-dir", join(o.workDir, "master-state"), "--delay", "100ms", "--log-level", "warn"], { env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    watch.stdout?.pipe(logStream, { end: false });
    watch.stderr?.pipe(logStream, { end: false });
    children.push(watch);

    // The workers, each with a contiguous block of nodes.
    const per = Math.ceil(o.nodes / result.workers);
    let ready = 0;
    const stopped: Promise<{ failed: number; errors: string[] }>[] = [];
    for (let w = 0; w < result.workers; w++) {
      const firstNode = w * per;
      const count = Math.min(per, o.nodes - firstNode);
      if (count <= 0) break;
      const init: WorkerInit = {
        repo: o.repo,
        endpoint: fleetProxy.endpoint,
        url,
        root: join(o.workDir, "nodes"),
        firstNode,
        nodes: count,
        intervalMs: o.intervalMs,
        ...(queues ? { queues: queues.slice(firstNode, firstNode + count) } : {}),
        baseFiles: base.map((e) => ({ rel: e.path, size: e.size })),
        logFile: join(dirname(o.logPath), `fleet-worker-${w}.log`),
      };
      writeFileSync(init.logFile, "");
      // The launcher's heap setting (bin/fansync.js), so the pullers run as the CLI runs them.
      const child = fork(join(here, "fleet-worker.ts"), [], { env: { ...o.env, FLEET_WORKER: JSON.stringify(init) }, execArgv: ["--max-semi-space-size=8"], stdio: ["ignore", "pipe", "pipe", "ipc"] });
      child.stdout?.pipe(logStream, { end: false });
      child.stderr?.pipe(logStream, { end: false });
      workers.push(child);
      stopped.push(
        new Promise((resolve) => {
          child.on("message", (m: WorkerMessage) => {
            if (m.type === "ready") ready++;
            else if (m.type === "arrivals") {
              probeMs.set(w, m.probeMs);
              for (const a of m.list) {
                const byNode = arrivals.get(a.change) ?? new Map<number, number>();
                byNode.set(a.node, a.t);
                arrivals.set(a.change, byNode);
              }
            } else if (m.type === "stopped") resolve({ failed: m.failed, errors: m.errors });
          });
          child.once("exit", (code) => resolve({ failed: code === 0 ? 0 : count, errors: code === 0 ? [] : [`worker ${w} exited with ${code}`] }));
        }),
      );
    }
    o.log(`fleet: ${o.nodes} pullers in ${workers.length} processes, ${o.events ? `woken by events (safety poll ${EVENTS_INTERVAL_MS} ms)` : `interval ${o.intervalMs} ms`}; waiting for every node to hold the base tree`);
    const readyBy = Date.now() + 60_000 + o.nodes * 500;
    while (ready < workers.length) {
      if (Date.now() > readyBy) throw new Error(`only ${ready} of ${workers.length} worker processes had the base tree on every node in time (see ${o.logPath})`);
      if (watch.exitCode !== null) throw new Error(`watch exited early (${watch.exitCode})`);
      if (workers.some((w) => w.exitCode !== null)) throw new Error(`a worker process exited early (see ${o.logPath})`);
      await sleep(200);
    }
    await sleep(o.intervalMs);

    // The measured window.
    const cpu = (pid: number | undefined): number => (pid === undefined ? 0 : (readCpuSeconds(pid) ?? 0));
    measuring = true;
    const t0 = Date.now();
    const serverCpu0 = cpu(server.pid);
    const workersCpu0 = workers.reduce((a, w) => a + cpu(w.pid), 0);
    const self0 = process.cpuUsage();
    const bytes0 = fleetProxy.snapshot().bytesDown;
    const rnd = prng(hash32(`fleet/${o.seed}`));
    const writes: { change: number; rel: string; t: number }[] = [];
    o.log(`fleet: all nodes ready; publishing a change every ${o.publishEveryMs} ms for ${Math.round(o.durationMs / 1000)} s`);
    for (let n = 0; Date.now() - t0 < o.durationMs; n++) {
      const rel = `fleet/change-${n}.html`;
      const body = contentFor(rel, 2048 + Math.floor(rnd() * 6144), o.seed, 0);
      mkdirSync(join(master, "fleet"), { recursive: true });
      const fh = await open(join(master, rel), "w");
      await fh.writeFile(body);
      await fh.close();
      writes.push({ change: n, rel, t: Date.now() });
      const msg: ParentMessage = { type: "expect", change: n, rel, size: body.length };
      for (const w of workers) w.send(msg);
      await sleep(o.publishEveryMs);
    }
    // Let the last change arrive everywhere (or give up after a few intervals).
    const last = writes[writes.length - 1];
    const drainBy = Date.now() + 5 * o.intervalMs + 10_000;
    while (last !== undefined && (arrivals.get(last.change)?.size ?? 0) < o.nodes && Date.now() < drainBy) await sleep(100);
    result.durationMs = Date.now() - t0;
    measuring = false;
    result.bytesDown = fleetProxy.snapshot().bytesDown - bytes0;
    result.serverCpuS = cpu(server.pid) - serverCpu0;
    // The workers' arrival probes are the bench's work, not the pullers': taken off (their stats are
    // synchronous, so their wall time is CPU time).
    result.probeCpuS = [...probeMs.values()].reduce((a, b) => a + b, 0) / 1000;
    result.pullersCpuS = workers.reduce((a, w) => a + cpu(w.pid), 0) - workersCpu0 - result.probeCpuS;
    const self = process.cpuUsage(self0);
    result.proxyCpuS = (self.user + self.system) / 1e6;
    result.workerRssKb = workers.map((w) => (w.pid === undefined ? 0 : (readPeakRssKb(w.pid) ?? 0)));
    result.publishes = writes.length;

    // Delay of each (change, node): from the head PUT that published it, and from the write.
    for (const w of writes) {
      const published = headPuts.find((t) => t >= w.t);
      const got = arrivals.get(w.change);
      result.missed += o.nodes - (got?.size ?? 0);
      for (const t of got?.values() ?? []) {
        if (published !== undefined) result.delaysMs.push(Math.max(0, t - published));
        result.endToEndMs.push(t - w.t);
      }
    }
    const heads = headPuts.filter((t) => t >= t0).length;
    if (heads !== writes.length) result.note = `${heads} head PUTs for ${writes.length} changes written (watch batched or split some)`;

    for (const w of workers) w.send({ type: "stop" } satisfies ParentMessage);
    let giveUp: NodeJS.Timeout | undefined;
    const outcomes = await Promise.race([Promise.all(stopped), new Promise<undefined>((r) => (giveUp = setTimeout(() => r(undefined), 60_000)))]);
    clearTimeout(giveUp);
    const failed = outcomes?.reduce((a, x) => a + x.failed, 0) ?? 0;
    if (outcomes === undefined) result.note = [result.note, "workers did not stop within 60 s"].filter(Boolean).join("; ");
    if (failed > 0) {
      result.status = "failed";
      result.note = [result.note, `${failed} pullers ended in error: ${outcomes?.flatMap((x) => x.errors).join("; ")}`].filter(Boolean).join("; ");
    }
    watch.kill("SIGTERM");
    await waitExit(watch, 15_000);
    o.log(`fleet: done, ${result.publishes} changes, ${result.delaysMs.length} arrivals, ${result.missed} missed`);
  } catch (err) {
    result.status = "failed";
    result.note = err instanceof Error ? err.message : String(err);
    o.log(`fleet failed: ${result.note}`);
  } finally {
    measuring = false;
    for (const c of [...children, ...workers]) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all([...children, ...workers].map((c) => waitExit(c, 5_000)));
    await fleetProxy.close();
    await masterProxy.close();
    await server.stop();
    logStream.end();
    rmSync(o.workDir, { recursive: true, force: true });
  }
  return result;
}
