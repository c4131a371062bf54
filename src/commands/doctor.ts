/**
 * `fansync doctor s3://bucket/prefix [--json] [--no-write]`: the first command on a new setup.
 * Checks credentials, access, the clock and what the S3 server supports, prints one line per check
 * (or one JSON document) and exits non-zero when a check FAILs. Probe objects are written only
 * under the meta prefix and always removed.
 */
import type { ConfigFor } from "../core/config.ts";
import { exitCodeOf, renderFailures, renderJson, renderText } from "../core/doctor-report.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { storeFor } from "./wiring.ts";
import { runDoctor } from "../sync/doctor-checks.ts";

/** Run the checks, print the report (stdout) and the FAIL lines (stderr); returns the exit code. */
export async function doctor(cfg: ConfigFor<"doctor">, log: Logger, signal: AbortSignal, opts: { json: boolean; write: boolean }): Promise<number> {
  const loc = cfg.target;
  const store = storeFor(cfg, loc);
  try {
    const checks = await runDoctor({ store, loc, log: log.child({ component: "doctor" }), signal, now: () => new Date() }, { write: opts.write });
    process.stdout.write(opts.json ? renderJson(checks) : renderText(checks, { location: formatLocation(loc), endpoint: store.endpoint }));
    process.stderr.write(renderFailures(checks));
    return exitCodeOf(checks);
  } finally {
    store.client.destroy();
  }
}
