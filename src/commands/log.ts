/**
 * `fansync log s3://bucket/prefix [--verbose] [--json] [--limit N]`: the retained generations of a
 * location, newest first, with what each changed. Read-only: it lists the meta prefix and reads
 * manifests and journals, and never writes.
 */
import type { ConfigFor } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import { formatHistory } from "../core/history.ts";
import { formatLocation } from "../core/location.ts";
import { storeFor } from "./wiring.ts";
import { readHead } from "../engine/generation-reader.ts";
import { listRetained, readHistory } from "../engine/history.ts";

/** Options of `fansync log` beyond the common ones. */
export interface LogOptions {
  readonly json: boolean;
  readonly verbose: boolean;
  /** As given on the command line; undefined: every retained generation. */
  readonly limit: string | undefined;
}

/** Print the history of the configured target location. */
export async function showLog(cfg: ConfigFor<"log">, opts: LogOptions, signal: AbortSignal): Promise<void> {
  const loc = cfg.target;
  let limit = Number.MAX_SAFE_INTEGER;
  if (opts.limit !== undefined) {
    if (!/^\d+$/.test(opts.limit) || Number(opts.limit) < 1) throw new UsageError(`--limit ${JSON.stringify(opts.limit)} is not a positive integer`);
    limit = Number(opts.limit);
  }
  const store = storeFor(cfg, loc);
  const url = formatLocation(loc);
  const hs = await readHead(store, loc, signal);
  if (!hs) throw new UsageError(`nothing is published at ${url} (no head.json)`, { hint: "check the location; fansync push publishes the first generation" });
  const retained = await listRetained(store, loc, hs.head, signal);
  const rows = await readHistory(store, loc, hs, retained, { limit, signal });
  if (opts.json) {
    // One line, like `status --json`: easy to pipe into jq. Paths only with --verbose (they can be many).
    const generations = rows.map(({ changes, unsplit, ...g }) => ({
      ...g,
      added: changes ? changes.added.length : null,
      changed: changes ? changes.changed.length : null,
      deleted: changes ? changes.deleted.length : unsplit ? unsplit.deleted.length : null,
      ...(unsplit ? { addedOrChanged: unsplit.puts.length } : {}),
      ...(opts.verbose ? { paths: changes ?? (unsplit ? { addedOrChanged: unsplit.puts, deleted: unsplit.deleted } : null) } : {}),
    }));
    const { head } = hs;
    process.stdout.write(JSON.stringify({
      location: url,
      head: { generation: head.generation, files: head.files, bytes: head.bytes, oldestJournal: head.oldestJournal, writer: head.writer, time: head.time },
      retained: [...retained.manifests.keys()],
      generations,
    }) + "\n");
    return;
  }
  process.stdout.write(formatHistory(url, rows, { verbose: opts.verbose, retained: [...retained.manifests.keys()] }));
}
