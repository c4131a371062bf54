/**
 * One read of the fleet: each location's head and every node report found under them. Shared by
 * `fansync status s3://...` and the daemons' status page.
 */
import { errorLine } from "../core/errors.ts";
import { formatLocation, type Location } from "../core/location.ts";
import { type FleetView, planFleetView } from "../core/node-report.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import { readHead } from "./generation-reader.ts";
import { readNodeReports } from "./node-reports.ts";

/** One location's head as seen now (or why it could not be read). */
export interface LocationHead {
  readonly url: string;
  readonly generation: number | null;
  readonly time: string | null;
  readonly writer: string | null;
  readonly files: number | null;
  readonly bytes: number | null;
  readonly error: string | null;
}

/** Heads of every location plus the fleet table. */
export interface FleetStatus {
  readonly at: string;
  readonly locations: readonly LocationHead[];
  readonly fleet: FleetView;
  /** Report objects that were not valid reports (shown, never trusted). */
  readonly unreadable: readonly string[];
}

/** Read heads and reports of `sources` (the first is the reference, normally the primary). */
export async function readFleet(sources: readonly { loc: Location; store: ObjectStore }[], o: { now: () => Date; silentAfterMs: number; signal?: AbortSignal; previous?: FleetStatus | undefined }): Promise<FleetStatus> {
  const locations = await Promise.all(
    sources.map(async ({ loc, store }): Promise<LocationHead> => {
      const url = formatLocation(loc);
      try {
        const hs = await readHead(store, loc, o.signal);
        const h = hs?.head;
        return { url, generation: h?.generation ?? 0, time: h?.time ?? null, writer: h?.writer ?? null, files: h?.files ?? 0, bytes: h?.bytes ?? 0, error: null };
      } catch (err) {
        return { url, generation: null, time: null, writer: null, files: null, bytes: null, error: errorLine(err) };
      }
    }),
  );
  // Reports are read only from locations whose head could be read (an unreachable one would fail again).
  const readable = sources.filter((_, i) => locations[i]?.error === null);
  const { reports, unreadable } = await readNodeReports(readable, o.signal);
  // The newest head any location has (normally the primary's) is what every node is measured against.
  const newest = locations.reduce<LocationHead | undefined>((a, l) => ((l.generation ?? -1) > (a?.generation ?? -1) ? l : a), undefined);
  const now = o.now();
  return { at: now.toISOString(), locations, fleet: planFleetView({ generation: newest?.generation ?? 0, time: newest?.time ?? null }, reports, now.getTime(), o.silentAfterMs, o.previous?.fleet.behindSince), unreadable };
}
