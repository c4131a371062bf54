/** --on-publish / --on-apply (engine/hooks.ts) with real processes and a temp state dir. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { HookRunner, hookInput } from "../../src/engine/hooks.ts";
import { fakeLog } from "../helpers/fake-log.ts";
import { tempDir } from "../helpers/tree.ts";

const g = (generation: number, changed: string[], deleted: string[] = []) => ({ location: "s3://b/www/", generation, changed, deleted });

test("a hook gets the generation's paths as NDJSON, once per generation, even across a restart", async () => {
  const t = tempDir("hooks");
  try {
    const out = path.join(t.dir, "out.ndjson");
    const record = path.join(t.dir, "state", "hook-last.json");
    const command = `cat >> '${out}'; echo "env $FANSYNC_HOOK $FANSYNC_GENERATION" >> '${out}'`;
    const mk = () => {
      const f = fakeLog();
      return { ...f, hook: new HookRunner({ name: "on-publish", command, timeoutMs: 10_000, recordFile: record, env: process.env }, { log: f.log, signal: new AbortController().signal, now: () => new Date() }) };
    };
    const a = mk();
    a.hook.notify(g(2, ["a.html", "d/b.css"], ["old.js"]));
    a.hook.notify(g(2, ["a.html"]));
    a.hook.notify(g(3, [], []));
    await a.hook.flush();
    // A restarted process (same state directory) told generation 2 again, then 4.
    const b = mk();
    b.hook.notify(g(2, ["a.html"]));
    b.hook.notify(g(4, [], ["a.html"]));
    await b.hook.flush();
    const lines = (await readFile(out, "utf8")).trim().split("\n");
    assert.deepEqual(lines, [
      '{"generation":2,"location":"s3://b/www/","op":"put","path":"a.html"}',
      '{"generation":2,"location":"s3://b/www/","op":"put","path":"d/b.css"}',
      '{"generation":2,"location":"s3://b/www/","op":"delete","path":"old.js"}',
      "env on-publish 2",
      '{"generation":4,"location":"s3://b/www/","op":"delete","path":"a.html"}',
      "env on-publish 4",
    ]);
    assert.equal(a.lines.filter((l) => l.msg === "hook ran").length, 1);
    assert.ok(b.lines.some((l) => l.msg.includes("already ran")));
    assert.equal(hookInput(g(5, [], [])), "");
  } finally {
    t.cleanup();
  }
});

test("a failing hook's exit status is logged; a hanging one is killed after the timeout with its children", async () => {
  const t = tempDir("hooks-bad");
  try {
    const f = fakeLog();
    const deps = { log: f.log, signal: new AbortController().signal, now: () => new Date() };
    const failing = new HookRunner({ name: "on-apply", command: "echo nope >&2; exit 3", timeoutMs: 10_000, recordFile: path.join(t.dir, "r1.json"), env: process.env }, deps);
    failing.notify(g(1, ["a"]));
    await failing.flush();
    const failed = f.lines.find((l) => l.msg === "hook failed");
    assert.equal(failed?.fields.exitCode, 3);
    assert.equal(failed?.fields.output, "nope");

    const pidFile = path.join(t.dir, "child.pid");
    const hanging = new HookRunner({ name: "on-apply", command: `sleep 30 & echo $! > '${pidFile}'; wait`, timeoutMs: 300, recordFile: path.join(t.dir, "r2.json"), env: process.env }, deps);
    const started = Date.now();
    hanging.notify(g(1, ["a"]));
    await hanging.flush();
    assert.ok(Date.now() - started < 10_000, "the hook did not run to its end");
    assert.ok(f.lines.some((l) => l.msg === "hook timed out and was killed" && l.level === "error"));
    const pid = Number(await readFile(pidFile, "utf8"));
    // Killed at once; reaped by init a moment later (a zombie still answers signal 0).
    const alive = () => {
      try {
        process.kill(pid, 0);
        return !/State:\s+Z/.test(readFileSync(`/proc/${pid}/status`, "utf8"));
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(alive(), false, "the hook's own child was killed too");
  } finally {
    t.cleanup();
  }
});
