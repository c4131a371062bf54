/**
 * The run lock (src/adapters/state-dir.ts) with real processes: of many runs started at the same
 * moment exactly one holds it; a holder killed with SIGKILL frees it at once; a lock file naming
 * a live, unrelated PID (a reused PID after a reboot) does not stop anyone; and a live holder's
 * lock is never taken over.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

const STATE_DIR_MODULE = fileURLToPath(new URL("../../src/adapters/state-dir.ts", import.meta.url));
const dir = mkdtempSync(path.join(os.tmpdir(), "fansync-lock-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A child that takes the lock, says "got" or "locked: <message>", and holds it for `holdMs`. */
function contender(file: string, holdMs: number) {
  const code = `
    const { acquireRunLock } = await import(${JSON.stringify(STATE_DIR_MODULE)});
    try {
      const lock = await acquireRunLock(${JSON.stringify(file)});
      process.stdout.write("got\\n");
      await new Promise((r) => setTimeout(r, ${holdMs}));
      await lock.release();
    } catch (err) {
      process.stdout.write("locked: " + err.message + "\\n");
      process.exitCode = err.exitCode ?? 1;
    }`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  const done = new Promise<{ out: string; code: number | null }>((resolve) => child.on("close", (code) => resolve({ out, code })));
  const saidSomething = new Promise<void>((resolve) => child.stdout.on("data", () => resolve()));
  return { child, done, saidSomething, said: () => out };
}

test("of eight runs started together exactly one takes the lock; the others exit 75 naming the holder", async () => {
  const file = path.join(dir, "race.lock");
  for (let round = 0; round < 3; round++) {
    // The holder keeps the lock until every run has spoken (then it is killed): on a loaded machine
    // a run may start seconds after the others, and must still find the lock held.
    const runs = Array.from({ length: 8 }, () => contender(file, 120_000));
    await Promise.all(runs.map((r) => r.saidSomething));
    for (const r of runs) if (r.said().startsWith("got")) r.child.kill("SIGKILL");
    const results = await Promise.all(runs.map((r) => r.done));
    const got = results.filter((r) => r.out.startsWith("got"));
    assert.equal(got.length, 1, `round ${round}: ${results.map((r) => r.out.trim()).join(" | ")}`);
    for (const r of results.filter((x) => !x.out.startsWith("got"))) {
      assert.equal(r.code, 75);
      // The holder writes its pid just after it took the lock: a loser that looked before says "another process".
      assert.match(r.out, /another fansync run \((pid \d+, since .*|another process)\) holds .*race\.lock; exiting/);
    }
  }
});

test("a holder killed with SIGKILL frees the lock at once; a file naming a live unrelated PID blocks nobody", async () => {
  const file = path.join(dir, "kill.lock");
  const holder = contender(file, 60_000);
  await holder.saidSomething;
  const blocked = await contender(file, 0).done;
  assert.equal(blocked.code, 75, "a live holder keeps the lock");
  holder.child.kill("SIGKILL");
  await holder.done;
  const next = await contender(file, 0).done;
  assert.equal(next.out.trim(), "got", "the kernel released the dead holder's lock");
  // What a reboot leaves: a lock file whose PID now belongs to some other live process (this one).
  writeFileSync(file, JSON.stringify({ pid: process.pid, since: "2026-01-01T00:00:00.000Z" }));
  const after = await contender(file, 0).done;
  assert.equal(after.out.trim(), "got");
});
