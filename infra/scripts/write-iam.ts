/**
 * Write infra/iam/{uploader,replicator,puller}.json from infra/src/policies.ts (npm run infra:iam).
 * `--check` writes nothing and exits 1 when a committed file differs, for CI.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { planIamFiles } from "../src/iam-files.ts";

const dir = join(import.meta.dirname, "..", "iam");
const check = process.argv.includes("--check");
let stale = 0;
for (const [name, content] of planIamFiles()) {
  const path = join(dir, name);
  const current = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (current === content) continue;
  if (check) {
    stale++;
    console.error(`${path} is out of date: run npm run infra:iam`);
  } else {
    await writeFile(path, content);
    console.log(`wrote ${path}`);
  }
}
if (stale > 0) process.exitCode = 1;
