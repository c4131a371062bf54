// Run one seed twice in this process and print the first step where the two runs differ (exit 1),
// or "same N" (exit 0). For the simulation's determinism under load (test/unit/sim.test.ts "a seed
// replays exactly"): run it beside a load, e.g. `node sim/run.ts --seeds 400 --jobs 2 &`.
//
//   node sim/replay-diff.ts [seed] [steps]
import { runSeed } from "./seed.ts";

const seed = Number(process.argv[2] ?? 4);
const steps = Number(process.argv[3] ?? 80);
const o = { steps, verbose: true, quirks: true, flips: true, plant: undefined, actors: ["master", "replicator", "puller"] } as const;
const runs: string[][] = [[], []];
const write = process.stderr.write.bind(process.stderr);
for (const lines of runs) {
  // runSeed's verbose trace goes to stderr, a line per step: kept, not printed.
  (process.stderr as unknown as { write: (s: string) => boolean }).write = (s: string) => lines.push(String(s).trim()) > 0;
  await runSeed(seed, o);
}
(process.stderr as unknown as { write: typeof write }).write = write;
const [a, b] = runs as [string[], string[]];
const n = Math.max(a.length, b.length);
for (let i = 0; i < n; i++) {
  if (a[i] === b[i]) continue;
  console.log(`seed ${seed}: the runs part at trace line ${i}`);
  for (let j = Math.max(0, i - 3); j < Math.min(n, i + 4); j++) console.log(`  A ${a[j] ?? "(end)"}\n  B ${b[j] ?? "(end)"}`);
  process.exit(1);
}
console.log(`same ${n}`);
