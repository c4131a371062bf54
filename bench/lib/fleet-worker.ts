// One process of the simulated fleet: hosts many pullers, each the real `fansync pull --watch`
// (the command's own `pull()` from the built fansync, with its config resolved as the CLI resolves
// it), each with its own docroot and state directory. Forked by lib/fleet.ts with an IPC channel:
//   parent → worker: { type: "expect", change, rel, size }  a published file to wait for on every node
//                    { type: "stop" }                       stop the pullers (SIGTERM's drain path)
//   worker → parent: { type: "ready" }                      every node holds the base tree
//                    { type: "arrivals", list: [{ change, node, t }], probeMs }  batched; probeMs is the
//                      time spent probing so far (synchronous stats: CPU the parent takes off the pullers')
//                    { type: "stopped", failed }            pullers stopped; how many ended in error
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** What the parent passes in FLEET_WORKER (JSON). */
export type WorkerInit = {
  repo: string;
  endpoint: string;
  url: string;
  root: string;
  firstNode: number;
  nodes: number;
  intervalMs: number;
  /** With events: each node's SQS queue (this worker's nodes, in order); the poll is then fansync's default with --events. */
  queues?: string[];
  baseFiles: { rel: string; size: number }[];
  logFile: string;
};

/** Messages a worker sends. */
export type WorkerMessage =
  | { type: "ready" }
  | { type: "arrivals"; list: { change: number; node: number; t: number }[]; probeMs: number }
  | { type: "stopped"; failed: number; errors: string[] };

/** Messages a worker receives. */
export type ParentMessage = { type: "expect"; change: number; rel: string; size: number } | { type: "stop" };

type PullFn = (cfg: unknown, log: unknown, signal: AbortSignal) => Promise<void>;
type ResolveFn = (command: "pull", file: undefined, flags: Record<string, unknown>) => Promise<{ cfg: unknown }>;
type LoggerFn = (o: { level: string; format: "json"; file: string; name: string }) => unknown;

const init = JSON.parse(process.env.FLEET_WORKER ?? "{}") as WorkerInit;
const send = (m: WorkerMessage): void => {
  process.send?.(m);
};
const dist = (p: string): string => pathToFileURL(join(init.repo, "dist", p)).href;
const { pull } = (await import(dist("commands/pull.js"))) as { pull: PullFn };
const { resolveConfig } = (await import(dist("cli/settings.js"))) as { resolveConfig: ResolveFn };
const { createLogger } = (await import(dist("adapters/logger.js"))) as { createLogger: LoggerFn };

const log = createLogger({ level: "warn", format: "json", file: init.logFile, name: `fleet-worker-${init.firstNode}` });
const stop = new AbortController();
const docroot = (node: number): string => join(init.root, `node-${node}`, "www");
const nodes = Array.from({ length: init.nodes }, (_, i) => init.firstNode + i);
const errors: string[] = [];
let failed = 0;

// Each node starts at a random point of its first interval, as independent machines would: fansync
// adds no jitter of its own, so nodes started together would poll in lockstep.
const runs = nodes.map(async (node, i) => {
  const queue = init.queues?.[i];
  mkdirSync(docroot(node), { recursive: true });
  await new Promise((r) => setTimeout(r, Math.random() * init.intervalMs));
  const { cfg } = await resolveConfig("pull", undefined, {
    docroot: docroot(node),
    sources: [init.url],
    endpointUrl: init.endpoint,
    stateDir: join(init.root, `node-${node}`, "state"),
    watch: true,
    ...(queue ? { events: queue } : { interval: `${init.intervalMs}ms` }),
    progress: false,
    logLevel: "warn",
  });
  try {
    await pull(cfg, log, stop.signal);
  } catch (err) {
    if (!stop.signal.aborted) {
      failed++;
      if (errors.length < 5) errors.push(`node ${node}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
});

const hasFile = (node: number, rel: string, size: number): boolean => statSync(join(docroot(node), rel), { throwIfNoEntry: false })?.size === size;

// Ready once every node holds the whole base tree (checked twice a second).
const readyTimer = setInterval(() => {
  if (nodes.every((n) => init.baseFiles.every((f) => hasFile(n, f.rel, f.size)))) {
    clearInterval(readyTimer);
    send({ type: "ready" });
  }
}, 500);

// How often the docroots are probed for arrived files: fine enough for delays of seconds, and coarse
// enough that the probing (the bench's work, on the pullers' cores) stays small beside the pullers.
const PROBE_MS = 25;

// Published files being waited for, with the nodes that do not have them yet. A rename puts a
// complete file in place, so the right size at the final path means it is on disk.
const pending: { change: number; rel: string; size: number; left: Set<number> }[] = [];
let probeMs = 0;
const pollTimer = setInterval(() => {
  if (pending.length === 0) return;
  const started = performance.now();
  const list: { change: number; node: number; t: number }[] = [];
  const t = Date.now();
  for (const p of pending) {
    for (const n of p.left) {
      if (hasFile(n, p.rel, p.size)) {
        p.left.delete(n);
        list.push({ change: p.change, node: n, t });
      }
    }
  }
  for (let i = pending.length - 1; i >= 0; i--) if (pending[i]?.left.size === 0) pending.splice(i, 1);
  probeMs += performance.now() - started;
  if (list.length > 0) send({ type: "arrivals", list, probeMs });
}, PROBE_MS);

process.on("message", (m: ParentMessage) => {
  if (m.type === "expect") pending.push({ change: m.change, rel: m.rel, size: m.size, left: new Set(nodes) });
  else if (m.type === "stop") {
    clearInterval(readyTimer);
    clearInterval(pollTimer);
    stop.abort(new Error("fleet stopped"));
    void Promise.allSettled(runs).then(() => {
      send({ type: "stopped", failed, errors });
      process.disconnect?.();
    });
  }
});
