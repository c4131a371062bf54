/**
 * Fleet reports: the small JSON a puller writes to `<meta>nodes/<node-id>.json` (pull --report), and
 * the pure view built from a head plus every report (`fansync status s3://...`, the status page).
 * Reports are advisory: a missing or hostile one never changes what a node downloads.
 */
import { compareUtf8 } from "./paths.ts";
import { formatAge } from "./units.ts";

/** Format tag of a node report. */
export const NODE_REPORT_FORMAT = "fansync-node-report/1";

/** What one node says about itself after a run. */
export interface NodeReport {
  readonly format: typeof NODE_REPORT_FORMAT;
  readonly node: string;
  readonly host: string;
  readonly status: "OK" | "STALE" | "ERROR";
  readonly generation: number;
  readonly headGeneration: number;
  readonly lagSeconds: number;
  readonly source: string;
  readonly lastSuccess: string | null;
  readonly lastError: string | null;
  /** When this report was written. */
  readonly time: string;
  /** How often the node reports at the least (ms), so a reader can tell a silent node. */
  readonly everyMs: number;
  readonly version: string;
}

/** The key of a node's report below a meta prefix. */
export function nodeReportKey(meta: string, node: string): string {
  return `${meta}nodes/${node}.json`;
}

/** Reports bigger than this are not read (a report is a few hundred bytes). */
export const NODE_REPORT_MAX_BYTES = 16 * 1024;

const STATUSES = new Set(["OK", "STALE", "ERROR"]);

/** Parse a stored report; undefined when it is not a valid one (it is then shown as unreadable, never trusted). */
export function parseNodeReport(data: Uint8Array): NodeReport | undefined {
  if (data.byteLength > NODE_REPORT_MAX_BYTES) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    return undefined;
  }
  const o = v as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null || o.format !== NODE_REPORT_FORMAT) return undefined;
  const str = (k: string) => typeof o[k] === "string" && (o[k] as string).length <= 1000;
  const strOrNull = (k: string) => o[k] === null || str(k);
  const nat = (k: string) => Number.isSafeInteger(o[k]) && (o[k] as number) >= 0;
  const ok =
    str("node") && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(o.node as string) && str("host") && STATUSES.has(o.status as string) &&
    nat("generation") && nat("headGeneration") && typeof o.lagSeconds === "number" && Number.isFinite(o.lagSeconds) &&
    str("source") && strOrNull("lastSuccess") && strOrNull("lastError") && str("time") && !Number.isNaN(Date.parse(o.time as string)) &&
    nat("everyMs") && str("version");
  return ok ? (o as unknown as NodeReport) : undefined;
}

/** Whether a new report is worth writing: the state changed, or the last one is getting old. */
export function shouldReport(prev: { readonly key: string; readonly at: number } | undefined, key: string, now: number, everyMs: number): boolean {
  return !prev || prev.key !== key || now - prev.at >= everyMs || now < prev.at;
}

/** The part of a report whose change is news (everything but times and lag seconds). */
export function reportChangeKey(r: Pick<NodeReport, "status" | "generation" | "headGeneration" | "source" | "lastError">): string {
  return JSON.stringify([r.status, r.generation, r.headGeneration, r.source, r.lastError]);
}

/** One row of the fleet table. */
export interface NodeRow {
  readonly node: string;
  readonly host: string;
  /** The node's own word, or SILENT when it has not reported for too long. */
  readonly status: "OK" | "STALE" | "ERROR" | "SILENT";
  readonly generation: number;
  /** Generations behind the newest head known to the viewer. */
  readonly behind: number;
  readonly lagSeconds: number;
  readonly lastSuccess: string | null;
  readonly lastError: string | null;
  readonly source: string;
  readonly reportedAt: string;
  readonly reportAgeSeconds: number;
  /** Where the report was read (a location URL). */
  readonly from: string;
}

/** The fleet as a viewer sees it. */
export interface FleetView {
  readonly generation: number;
  /** Per node behind: since when (ms), for the next call (a viewer that reads the fleet repeatedly). */
  readonly behindSince: Readonly<Record<string, number>>;
  readonly nodes: readonly NodeRow[];
  readonly counts: Readonly<Record<NodeRow["status"], number>>;
}

/**
 * Build the fleet table. A node reporting in several locations (it moved to a fallback) appears
 * once, with its newest report. A node is SILENT when its newest report is older than
 * max(silentAfterMs, 3 × its own reporting period): a dead node cannot say it is dead.
 */
export function planFleetView(head: { readonly generation: number; readonly time: string | null }, reports: readonly { readonly report: NodeReport; readonly from: string }[], nowMs: number, silentAfterMs: number, prevBehindSince: Readonly<Record<string, number>> = {}): FleetView {
  const behindSince: Record<string, number> = {};
  const newest = new Map<string, { report: NodeReport; from: string }>();
  for (const r of reports) {
    const seen = newest.get(r.report.node);
    if (!seen || Date.parse(r.report.time) > Date.parse(seen.report.time)) newest.set(r.report.node, r);
  }
  const newestHead = Math.max(head.generation, ...[...newest.values()].map((r) => r.report.headGeneration));
  // A node behind the newest head has lagged at least since that head was published.
  const sinceHead = head.time && newestHead === head.generation ? Math.max(0, (nowMs - Date.parse(head.time)) / 1000) : 0;
  const nodes: NodeRow[] = [...newest.values()]
    .map(({ report: r, from }) => {
      const age = Math.max(0, (nowMs - Date.parse(r.time)) / 1000);
      const silent = age * 1000 > Math.max(silentAfterMs, 3 * r.everyMs);
      const behind = Math.max(0, newestHead - r.generation);
      // A report's lag was measured when it was written; a silent or behind node keeps lagging since.
      let lag = behind > 0 ? Math.max(sinceHead, r.lagSeconds + (silent || r.status !== "OK" ? age : 0)) : 0;
      // A viewer that saw the node behind before keeps counting from then: a newer head must not
      // make a node that fell further behind look like it caught up.
      if (behind > 0) {
        const since = Math.min(prevBehindSince[r.node] ?? Infinity, nowMs - lag * 1000);
        behindSince[r.node] = since;
        lag = (nowMs - since) / 1000;
      }
      return {
        node: r.node,
        host: r.host,
        status: silent ? ("SILENT" as const) : r.status,
        generation: r.generation,
        behind,
        lagSeconds: Math.round(lag),
        lastSuccess: r.lastSuccess,
        lastError: r.lastError,
        source: r.source,
        reportedAt: r.time,
        reportAgeSeconds: Math.round(age),
        from,
      };
    })
    .sort((a, b) => compareUtf8(a.node, b.node));
  const counts = { OK: 0, STALE: 0, ERROR: 0, SILENT: 0 };
  for (const n of nodes) counts[n.status]++;
  return { generation: newestHead, behindSince, nodes, counts };
}

/** Render the fleet table as fixed-width text (one header line, one line per node). */
export function renderFleetTable(view: FleetView): string {
  if (view.nodes.length === 0) return "no node has reported (pullers report with `fansync pull --report`)\n";
  const rows = [["NODE", "STATUS", "GEN", "BEHIND", "LAG", "LAST OK", "REPORTED", "SOURCE", "LAST ERROR"]];
  for (const n of view.nodes) {
    rows.push([
      n.node, n.status, String(n.generation), String(n.behind), formatAge(n.lagSeconds),
      n.lastSuccess ? `${formatAge((Date.parse(n.reportedAt) - Date.parse(n.lastSuccess)) / 1000 + n.reportAgeSeconds)} ago` : "never",
      `${formatAge(n.reportAgeSeconds)} ago`, n.source, n.lastError ? n.lastError.slice(0, 60) : "-",
    ]);
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join("  ").trimEnd()).join("\n") + "\n";
}
