/**
 * Fixtures of the engine tests on MemoryStore (test/unit/*-memory.test.ts): temp roots removed after
 * the file's tests, trees written and read synchronously, an object's current bytes in a world.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import { currentOf, type MemoryWorld } from "../../src/adapters/memory-store.ts";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** A new temp directory, removed once the test file's tests ran. */
export function tmp(prefix = "fansync-mem-"): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  roots.push(d);
  return d;
}

/** Write `files` under `dir` with mtime `t` seconds (so rounds see a change); null removes a path. */
export function writeTree(dir: string, files: Record<string, string | null>, t = Date.now() / 1000 - 10): void {
  for (const [p, body] of Object.entries(files)) {
    const abs = path.join(dir, p);
    if (body === null) {
      rmSync(abs, { force: true, recursive: true });
      continue;
    }
    mkdirSync(path.dirname(abs), { recursive: true });
    writeFileSync(abs, body);
    utimesSync(abs, t, t);
  }
}

/** Every file under `dir` (relative path → content), skipping nothing. */
export function readTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out[r] = readFileSync(path.join(d, e.name), "utf8");
    }
  };
  if (existsSync(dir)) walk(dir, "");
  return out;
}

/** The current bytes of `key` in `bucket`, as text (undefined: no object). */
export function object(world: MemoryWorld, bucket: string, key: string): string | undefined {
  const b = world.buckets.get(bucket);
  const v = b && currentOf(b, key);
  return v?.body.toString();
}
