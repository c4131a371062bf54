/**
 * Node reports in the bucket: a puller's opt-in `<meta>nodes/<node>.json`, and reading them all back
 * for `fansync status` and the status page. A report is one small PUT, skipped when nothing changed
 * since the last one and it is younger than the reporting period, so a no-op cron pull stays cheap.
 */
import pMap from "p-map";
import { errorMessage } from "../core/errors.ts";
import { BodyTooLarge } from "../adapters/bounded-io.ts";
import { formatLocation, metaPrefix, type Location } from "../core/location.ts";
import { NODE_REPORT_FORMAT, NODE_REPORT_MAX_BYTES, type NodeReport, nodeReportKey, parseNodeReport, reportChangeKey, shouldReport } from "../core/node-report.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";

/** Most nodes one status read looks at (a fleet is tens or hundreds of nodes). */
const MAX_NODES = 2000;

/** Write this node's report unless an identical one was written less than `everyMs` ago. Never throws. */
export async function writeNodeReport(store: ObjectStore, loc: Location, report: Omit<NodeReport, "format">, o: { state: StateDir; log: Logger; signal?: AbortSignal }): Promise<boolean> {
  const file = o.state.lastReport;
  const key = `${formatLocation(loc)}|${reportChangeKey(report)}`;
  const now = Date.parse(report.time);
  const prev = await readJson<{ key: string; at: number }>(file);
  if (!shouldReport(prev, key, now, report.everyMs)) return false;
  try {
    const body = Buffer.from(JSON.stringify({ format: NODE_REPORT_FORMAT, ...report }) + "\n");
    await store.put(nodeReportKey(metaPrefix(loc), report.node), body, { contentType: "application/json", cacheControl: "no-store" }, {}, o.signal);
    await writeJson(file, { key, at: now });
    return true;
  } catch (err) {
    // A report is advisory: a node that cannot write it still serves its docroot; the fleet view
    // shows it as SILENT soon enough.
    o.log.warn({ location: formatLocation(loc), ...errorFields(err) }, "could not write the node report");
    return false;
  }
}

/** Every readable report under each location's `<meta>nodes/` (unreadable ones are counted, not trusted). */
export async function readNodeReports(sources: readonly { loc: Location; store: ObjectStore }[], signal?: AbortSignal): Promise<{ reports: { report: NodeReport; from: string }[]; unreadable: string[] }> {
  const reports: { report: NodeReport; from: string }[] = [];
  const unreadable: string[] = [];
  for (const { loc, store } of sources) {
    const from = formatLocation(loc);
    const prefix = `${metaPrefix(loc)}nodes/`;
    let keys: { key: string }[];
    try {
      ({ keys } = await store.list(prefix, { max: MAX_NODES, ...(signal ? { signal } : {}) }));
    } catch (err) {
      // Listing needs s3:ListBucket on the meta prefix (the operator's role has it, a puller's not).
      unreadable.push(`${from}.fansync/nodes/: ${errorMessage(err)}`);
      continue;
    }
    const wanted = keys.filter((k) => k.key.endsWith(".json") && !k.key.slice(prefix.length).includes("/"));
    // A handful of reads at a time: a status command should not look like a load test.
    const read = await pMap(wanted, async (k) => ({ k, res: await store.get(k.key, { maxBytes: NODE_REPORT_MAX_BYTES, ...(signal ? { signal } : {}) }).catch((err: unknown) => (err instanceof BodyTooLarge ? { status: "too-large" as const } : Promise.reject(err))) }), { concurrency: 16 });
    for (const { k, res } of read) {
      if (res.status === "too-large") unreadable.push(`${from}${k.key.slice(loc.prefix.length)}`);
      if (res.status !== "ok") continue;
      const report = parseNodeReport(res.body);
      // The key names the node: a report claiming another node's name is not believed.
      if (report && nodeReportKey(metaPrefix(loc), report.node) === k.key) reports.push({ report, from });
      else unreadable.push(`${from}${k.key.slice(loc.prefix.length)}`);
    }
  }
  return { reports, unreadable };
}
