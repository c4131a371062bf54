/**
 * `fansync doctor s3://bucket/prefix [--json] [--no-write]`: the first command on a new setup.
 * Checks credentials, access, the clock and what the S3 server supports, prints one line per check
 * (or one JSON document) and exits non-zero when a check FAILs. Probe objects are written only
 * under the meta prefix and always removed.
 */
import type { ConfigFor } from "../core/config.ts";
import { exitCodeOf, renderFailures, renderJson, renderText } from "../core/doctor-report.ts";
import { ExitCode } from "../core/errors.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { storeFor } from "./wiring.ts";
import { runDoctor } from "../engine/doctor-checks.ts";

/** Run the checks, print the report (stdout) and the FAIL lines (stderr); returns the exit code. */
export async function doctor(cfg: ConfigFor<"doctor">, log: Logger, signal: AbortSignal, opts: { json: boolean; write: boolean }): Promise<number> {
  const loc = cfg.target;
  const store = storeFor(cfg, loc);
  try {
    const checks = await runDoctor({ store, loc, log: log.child({ component: "doctor" }), signal, now: () => new Date() }, { write: opts.write });
    // --events QUEUE_URL: the notification, topic, subscription and a round trip (docs/events.md).
    const ev = cfg.events ? await (await import("./events.ts")).runEventChecks(cfg, loc, cfg.events, signal) : [];
    const evJson = ev.map((c) => ({ name: `events-${c.name.replace(" ", "-")}`, status: c.status, detail: c.detail, action: c.status === "OK" ? "none" : "see docs/events.md" }));
    if (opts.json) process.stdout.write(ev.length ? JSON.stringify([...(JSON.parse(renderJson(checks)) as unknown[]), ...evJson]) + "\n" : renderJson(checks));
    else process.stdout.write(renderText(checks, { location: formatLocation(loc), endpoint: store.endpoint }) + (ev.length ? `events (${cfg.events}):\n${(await import("./events.ts")).renderEventChecks(ev)}` : ""));
    process.stderr.write(renderFailures(checks));
    for (const c of ev.filter((x) => x.status === "FAIL")) process.stderr.write(`fansync doctor: events ${c.name}: ${c.detail}\n  what to do: see docs/events.md\n`);
    const code = exitCodeOf(checks);
    return code === ExitCode.ok && ev.some((c) => c.status === "FAIL") ? ExitCode.partial : code;
  } finally {
    store.destroy();
  }
}
