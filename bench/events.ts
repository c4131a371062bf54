// Events vs polling alone (issue 24), without the rest of the bench: bench/lib/events-bench.ts runs
// it, and the output is the same section bench/run.ts puts in RESULTS.md (BENCH_SCENARIOS=events).
//   node bench/events.ts     BENCH_EVENTS_CHANGES=50 BENCH_EVENTS_NODES=3 BENCH_EVENTS_IDLE_S=60
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { eventsSettingsFromEnv, runEventsBench } from "./lib/events-bench.ts";
import { baseEnv } from "./lib/peers.ts";
import { eventsSection } from "./lib/report.ts";

const result = await runEventsBench({
  ...eventsSettingsFromEnv("full"),
  repo: fileURLToPath(new URL("..", import.meta.url)),
  workDir: mkdtempSync(join(tmpdir(), "fansync-bench-events-")),
  env: baseEnv(),
  log: (line) => process.stderr.write(`${line}\n`),
});
console.log(eventsSection(result));
if (result.status !== "ok") process.exitCode = 1;
