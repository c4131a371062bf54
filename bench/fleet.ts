// The simulated fleet alone (lib/fleet.ts), polling and woken by events (issue 24), without the rest
// of the bench; prints the fleet's two sections of RESULTS.md. FLEET_* as for bench/run.ts, plus
// FLEET_MODES (default "polling,events") and BENCH_SERVER (fauxqs, the default, or moto).
//   FLEET_NODES=20 FLEET_DURATION_S=60 node bench/fleet.ts
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fleetSettingsFromEnv, runFleet } from "./lib/fleet.ts";
import { baseEnv } from "./lib/peers.ts";
import { fleetEventsSection, fleetSection } from "./lib/report.ts";
import type { FleetResult } from "./lib/results.ts";

const modes = (process.env.FLEET_MODES ?? "polling,events").split(",").filter((m) => m !== "");
const serverKind = process.env.BENCH_SERVER === "moto" ? "moto" : "fauxqs";
const work = mkdtempSync(join(tmpdir(), "fansync-bench-fleet-"));
const results: Partial<Record<"polling" | "events", FleetResult>> = {};
for (const mode of ["polling", "events"] as const) {
  if (!modes.includes(mode)) continue;
  results[mode] = await runFleet({
    ...fleetSettingsFromEnv("full"),
    repo: fileURLToPath(new URL("..", import.meta.url)),
    workDir: join(work, mode),
    serverKind,
    serverLabel: serverKind,
    bucket: "bench-fleet",
    prefix: "site",
    seed: 1,
    env: baseEnv(),
    logPath: join(work, "logs", `fleet-${mode}.log`),
    log: (line) => process.stderr.write(`${line}\n`),
    fansyncOk: true,
    events: mode === "events",
  });
}
if (results.polling) console.log(`## Simulated fleet\n\n${fleetSection(results.polling)}\n`);
if (results.events) console.log(`## The fleet woken by events\n\n${fleetEventsSection(results.polling, results.events)}`);
console.error(`logs in ${join(work, "logs")}`);
if (Object.values(results).some((r) => r.status !== "ok")) process.exitCode = 1;
