/**
 * Print the fault suite's figures line: the totals of what each faults-*.integ.test.ts file
 * appended to the figures file (one JSON line per file and server). Usage: node figures-report.ts <file>
 */
import { existsSync, readFileSync } from "node:fs";

const file = process.argv[2];
if (!file || !existsSync(file)) {
  process.stdout.write("fault suite figures: no fault test file ran\n");
  process.exit(0);
}
const keys = ["faults", "killPoints", "hostile", "filesVerified", "bytesLost"] as const;
const total: Record<(typeof keys)[number], number> = { faults: 0, killPoints: 0, hostile: 0, filesVerified: 0, bytesLost: 0 };
const servers = new Set<string>();
const seeds = new Set<number>();
for (const line of readFileSync(file, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const o = JSON.parse(line) as Record<string, number | string>;
  servers.add(String(o.server));
  seeds.add(Number(o.seed));
  for (const k of keys) total[k] += Number(o[k]) || 0;
}
process.stdout.write(
  `fault suite figures (${[...servers].join(" + ")}${process.env.FANSYNC_SOAK === "1" ? ", soak" : ""}; seeds ${[...seeds].join(",")}): ` +
    `faults injected ${total.faults}, kill points tried ${total.killPoints}, hostile inputs tried ${total.hostile}, ` +
    `files verified ${total.filesVerified}, bytes lost ${total.bytesLost}\n`,
);
