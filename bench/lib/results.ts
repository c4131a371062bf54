import type { EventsResult } from "./events-bench.ts";
// The benchmark's data model: what run.ts records and report.ts / chart.ts render.
import type { SyncPropagation } from "./sync-propagation.ts";
import type { Interrupted } from "./interrupted.ts";

/** One measured invocation of one tool. */
export type RunRecord = {
  wallMs: number;
  /** Peak RSS in KiB (GNU time's %M), when measured. */
  rssKb?: number;
  /** Requests seen by the counting proxy, by kind (method, or LIST for bucket listings). */
  requests: Record<string, number>;
  bytesUp: number;
  bytesDown: number;
  /** User + system CPU seconds of the tool process and its children (GNU time %U + %S). */
  cpuS?: number;
  /** CPU seconds the S3 server process used during this invocation (/proc/PID/stat). */
  serverCpuS?: number;
  /** CPU seconds of the bench process itself meanwhile: almost all of it the counting proxy. */
  proxyCpuS?: number;
  /** Which run (0-based) this was: records with the same index ran in the same round, for paired ratios. */
  run?: number;
  /** Position of the tool in that round's rotated order (0 = first). */
  order?: number;
};

/** Why a row has no (or no trustworthy) figures. */
export type RowStatus = "ok" | "missing" | "not built" | "failed" | "n/a";

/** One tool in one scenario, with all its runs. */
export type Row = {
  /** Scenario key, e.g. "upload/10k"; rows with the same key are compared with each other. */
  key: string;
  /** Human title of the scenario. */
  scenario: string;
  toolId: string;
  tool: string;
  status: RowStatus;
  /** Start time of the bench invocation that measured this row (rows merged from several runs differ). */
  measuredAt?: string;
  /** Reason for a non-ok status, or a caveat such as an incomplete download. */
  note?: string;
  runs: RunRecord[];
};

/** Propagation latency of `watch` + `pull --watch` (scenario 5). */
export type Propagation = {
  status: RowStatus;
  note?: string;
  /** Latency of each file that arrived, in ms, from close() on the master to complete on the node. */
  samplesMs: number[];
  files: number;
  lost: number;
  delayMs: number;
  intervalMs: number;
  watchRssKb?: number;
  pullRssKb?: number;
  watchExit?: number | null;
  pullExit?: number | null;
};

/** Everything one bench invocation measured. */
export type BenchReport = {
  scale: string;
  startedAt: string;
  finishedAt: string;
  machine: { nproc: number; memoryGiB: number; kernel: string; cpu: string; loadAvgStart: number[]; loadAvgEnd: number[] };
  versions: Record<string, string>;
  settings: { runs: number; hugeRuns: number; concurrency: number; server: string; seed: number; unicode: boolean; rssMethod: string };
  trees: { name: string; files: number; bytes: number; twins: number }[];
  rows: Row[];
  propagation: Propagation;
  /** Two-way: a change on one `sync` node until both others serve it (lib/sync-propagation.ts), when run. */
  syncPropagation?: SyncPropagation;
  /** A push and a pull killed at half, then rerun (lib/interrupted.ts), when run. */
  interrupted?: Interrupted;
  /** The simulated fleet (lib/fleet.ts), when run. */
  fleet?: FleetResult;
  /** The same fleet woken by events (lib/fleet.ts with `events`), when run. */
  fleetEvents?: FleetResult;
  /** Events vs polling (lib/events-bench.ts), when run. */
  events?: EventsResult;
};

/** Per-node request figures of the simulated fleet, by request type. */
export type FleetRequestKinds = Record<string, number>;

/** What the simulated fleet measured (lib/fleet.ts): many pullers, one server, a master publishing. */
export type FleetResult = {
  status: RowStatus;
  note?: string;
  /** Polling at intervalMs, or woken by events (intervalMs is then the safety poll); absent: polling. */
  mode?: "polling" | "events";
  /** With events: how a head write became each node's message. */
  eventsVia?: string;
  nodes: number;
  workers: number;
  intervalMs: number;
  publishEveryMs: number;
  /** Wall time of the measured window (after every node held the base tree). */
  durationMs: number;
  /** Generations published in the window, and the files each node held (base tree). */
  publishes: number;
  baseFiles: number;
  /** Requests in the window by type (e.g. "GET head 304"), all nodes and the master together. */
  requests: FleetRequestKinds;
  /** Response body bytes the fleet's proxy sent to the nodes in the window (304s have none). */
  bytesDown: number;
  /** The master's share (PUTs, its own head reads) by type, to subtract from the fleet's. */
  masterRequests: FleetRequestKinds;
  /** Propagation delay samples, ms: head PUT answered → file complete on a node (one per node per change). */
  delaysMs: number[];
  /** Same, from the file's close() on the master (adds watch's quiet delay and the upload). */
  endToEndMs: number[];
  /** Changes that some node never received within the window. */
  missed: number;
  serverCpuS: number;
  proxyCpuS: number;
  /** CPU of the worker processes hosting the pullers (all nodes together), the bench's probes taken off. */
  pullersCpuS: number;
  /** Time the workers spent probing the docroots for arrived files (synchronous stats: CPU). */
  probeCpuS?: number;
  /** Peak RSS of each worker process, KiB (each hosts nodes / workers pullers). */
  workerRssKb: number[];
  server: string;
};
