// The benchmark's data model: what run.ts records and report.ts / chart.ts render.

/** One measured invocation of one tool. */
export type RunRecord = {
  wallMs: number;
  /** Peak RSS in KiB (GNU time's %M), when measured. */
  rssKb?: number;
  /** Requests seen by the counting proxy, by kind (method, or LIST for bucket listings). */
  requests: Record<string, number>;
  bytesUp: number;
  bytesDown: number;
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
};
