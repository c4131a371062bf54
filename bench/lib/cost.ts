// The cost model: what a fleet of pullers costs per node per month in S3 requests and dollars, from
// the per-poll and per-change figures the simulated fleet measured. Pure: numbers in, numbers out.
import type { FleetResult } from "./results.ts";

/**
 * S3 Standard list prices, us-east-1, as given in issue 14 and used here on 2026-11-30: check the
 * current price list before quoting a figure. CloudFront's are stated for the CDN comparison only.
 */
export const PRICES = {
  asOf: "2026-11-30",
  region: "us-east-1",
  s3GetPer1k: 0.0004,
  s3PutPer1k: 0.005,
  s3StoragePerGbMonth: 0.023,
  /** Data transfer out of AWS to the internet, first 10 TB a month. */
  s3TransferOutPerGb: 0.09,
  /** CloudFront HTTPS requests, United States / Europe: $0.0100 per 10,000. */
  cdnRequestPer10k: 0.01,
  /** CloudFront data transfer out, United States / Europe, first 10 TB. */
  cdnTransferOutPerGb: 0.085,
  /** S3's documented request rate per partitioned prefix, GET/HEAD per second. */
  prefixGetPerS: 5500,
} as const;

/** Seconds in the month the model uses (30 days). */
export const MONTH_S = 30 * 24 * 3600;

/**
 * Bytes a 304 answer costs on the wire although it has no body: its status line and headers (Date,
 * ETag, Last-Modified, x-amz-request-id, x-amz-id-2, Server). An estimate of AWS's answer, not a
 * measurement (the local server's headers differ); S3 bills transfer out by bytes on the wire.
 */
export const NOT_MODIFIED_BYTES = 300;

/** Per-node unit figures derived from one fleet run. */
export type FleetUnits = {
  nodeHours: number;
  /** Head GETs (304 and 200) per node per hour, and the effective poll period they imply. */
  headPerNodeHour: number;
  pollPeriodS: number;
  /** The head's request rate at the server, all nodes together, per second. */
  headPerS: number;
  /** Requests per node per hour by type (method, object, status). */
  perNodeHour: Record<string, number>;
  /** Requests a node sends per published change besides its head poll, by type and in total. */
  perChange: Record<string, number>;
  perChangeTotal: number;
  /** Response body bytes per node per change (head, journal, the changed file). */
  bytesPerChange: number;
  /** Master's PUTs and GETs per change (independent of the fleet's size). */
  masterPutsPerChange: number;
  masterGetsPerChange: number;
  /** Server CPU seconds per node per hour, and per 1,000 requests. */
  serverCpuPerNodeHour: number;
  serverCpuPer1kReq: number;
  /** The pullers' own CPU (client side) per node per hour. */
  pullerCpuPerNodeHour: number;
  totalRequests: number;
};

const sum = (r: Record<string, number>, pred: (k: string) => boolean = () => true): number =>
  Object.entries(r).reduce((a, [k, v]) => (pred(k) ? a + v : a), 0);
const isHead = (k: string): boolean => / head /.test(k) && k.startsWith("GET ");

/** The per-node units of a fleet run (undefined when it has no usable window). */
export function fleetUnits(f: FleetResult): FleetUnits | undefined {
  if (f.durationMs <= 0 || f.nodes <= 0) return undefined;
  const hours = f.durationMs / 3_600_000;
  const nodeHours = f.nodes * hours;
  const head = sum(f.requests, isHead);
  const total = sum(f.requests);
  const perNodeHour: Record<string, number> = {};
  for (const [k, v] of Object.entries(f.requests)) perNodeHour[k] = v / nodeHours;
  const applied = f.nodes * Math.max(1, f.publishes);
  const perChange: Record<string, number> = {};
  for (const [k, v] of Object.entries(f.requests)) if (!isHead(k)) perChange[k] = v / applied;
  const master = (m: string): number => sum(f.masterRequests, (k) => k.startsWith(`${m} `)) / Math.max(1, f.publishes);
  return {
    nodeHours,
    headPerNodeHour: head / nodeHours,
    pollPeriodS: head > 0 ? (nodeHours * 3600) / head : Infinity,
    headPerS: head / (f.durationMs / 1000),
    perNodeHour,
    perChange,
    perChangeTotal: (total - head) / applied,
    bytesPerChange: f.bytesDown / applied,
    masterPutsPerChange: master("PUT"),
    masterGetsPerChange: master("GET"),
    serverCpuPerNodeHour: f.serverCpuS / nodeHours,
    serverCpuPer1kReq: total > 0 ? (1000 * f.serverCpuS) / total : 0,
    pullerCpuPerNodeHour: f.pullersCpuS / nodeHours,
    totalRequests: total,
  };
}

/** One node's month at a poll interval and a change rate. */
export type NodeMonth = { requests: number; getUsd: number; transferUsd: number; totalUsd: number };

/**
 * A node's month: one head GET per poll (304 or 200), plus per change what the fleet measured
 * (journal, changed files). Changes arriving faster than polls are applied together: a node then
 * still fetches each journal, so the per-change requests stay (a slight overestimate of content GETs).
 */
export function nodeMonth(u: FleetUnits, intervalS: number, changesPerHour: number): NodeMonth {
  const polls = MONTH_S / intervalS;
  const changes = changesPerHour * (MONTH_S / 3600);
  const requests = polls + changes * u.perChangeTotal;
  const getUsd = (requests / 1000) * PRICES.s3GetPer1k;
  const bytes = changes * u.bytesPerChange + Math.max(0, polls - changes) * NOT_MODIFIED_BYTES;
  const transferUsd = (bytes / 1e9) * PRICES.s3TransferOutPerGb;
  return { requests, getUsd, transferUsd, totalUsd: getUsd + transferUsd };
}

/**
 * Fleet size at which the head's key alone reaches S3's per-prefix GET rate (all nodes poll one
 * key), and at which a change's burst does: within one interval every node reads the head, a
 * journal (same meta prefix) and the changed file (one key, read by every node).
 */
export function prefixLimitNodes(u: FleetUnits, intervalS: number): { steady: number; burst: number } {
  const metaPerChange = sum(u.perChange, (k) => / (journal|manifest|meta) /.test(k));
  return { steady: PRICES.prefixGetPerS * intervalS, burst: (PRICES.prefixGetPerS * intervalS) / (1 + metaPerChange) };
}

/**
 * Head polling through a CDN with a TTL: the origin sees at most one request per edge cache per TTL
 * (one in all with an origin shield), whatever the node count; the nodes' requests are billed by the
 * CDN instead, at its request price; a change takes up to one TTL longer to be seen.
 */
export function cdnHeadMonth(nodes: number, intervalS: number, ttlS: number, edges: number): { originGets: number; originUsd: number; cdnRequests: number; cdnUsd: number; directUsd: number } {
  const nodeRate = nodes / intervalS;
  const originRate = Math.min(nodeRate, edges / ttlS);
  const originGets = originRate * MONTH_S;
  const cdnRequests = nodeRate * MONTH_S;
  return {
    originGets,
    originUsd: (originGets / 1000) * PRICES.s3GetPer1k,
    cdnRequests,
    cdnUsd: (cdnRequests / 10_000) * PRICES.cdnRequestPer10k,
    directUsd: (cdnRequests / 1000) * PRICES.s3GetPer1k,
  };
}
