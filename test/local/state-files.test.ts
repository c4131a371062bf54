// The NDJSON state files (index, pull-files): streamed writes and reads, on a real temp directory.
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { NdjsonAppender, readJson, readNdjsonMap, writeJsonListAtomic, writeNdjsonMap } from "../../src/adapters/state-files.ts";

test("an NDJSON map round-trips across many read chunks, with multi-byte keys split at chunk edges", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "fansync-state-files-"));
  try {
    const file = path.join(dir, "map.ndjson");
    const map = new Map<string, [number, number, number, string]>();
    for (let i = 0; i < 40_000; i++) map.set(`d${i % 97}/caf\u00e9-\u{1f600}-${i}.html`, [i, 1700000000000 + i, i * 7, "ab".repeat(32)]);
    await writeNdjsonMap(file, map);
    assert.deepEqual(await readNdjsonMap(file), map);
    await writeNdjsonMap(file, new Map());
    assert.equal((await readNdjsonMap(file)).size, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a missing or damaged NDJSON map reads as empty (the caller rebuilds it)", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "fansync-state-files-"));
  try {
    const file = path.join(dir, "map.ndjson");
    assert.equal((await readNdjsonMap(file)).size, 0);
    writeFileSync(file, '["a",1]\n["b",2]\n["c",');
    assert.equal((await readNdjsonMap(file)).size, 0, "cut short");
    writeFileSync(file, '["a",1]\n{"not":"a pair"}\n');
    assert.equal((await readNdjsonMap(file)).size, 0, "not pairs");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a JSON list written streamed reads back as the same document", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "fansync-state-files-"));
  try {
    const file = path.join(dir, "ledger.json");
    const keys = Array.from({ length: 30_000 }, (_, i) => `site/d${i % 50}/"quoted" \u00e9 ${i}.html`);
    await writeJsonListAtomic(file, "keys", keys);
    assert.deepEqual(await readJson(file), { keys });
    await writeJsonListAtomic(file, "keys", []);
    assert.deepEqual(await readJson(file), { keys: [] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an appended NDJSON map: batches land on flush, the last line of a key wins, a torn tail costs only that line, and a removed file is opened anew", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "fansync-state-files-"));
  try {
    const file = path.join(dir, "sub", "log.ndjson");
    const log = new NdjsonAppender<{ n: number }>(file, { batch: 2, delayMs: 60_000 });
    log.add("a", { n: 1 });
    assert.equal((await readNdjsonMap(file, { tornTail: true })).size, 0, "one line waits for its batch");
    log.add("b", { n: 2 });
    log.add("a", { n: 3 });
    log.flush();
    assert.deepEqual(await readNdjsonMap(file, { tornTail: true }), new Map([["a", { n: 3 }], ["b", { n: 2 }]]));
    // A writer killed mid-line: the lines before it are kept.
    appendFileSync(file, '["c",{"n":');
    assert.deepEqual(await readNdjsonMap(file, { tornTail: true }), new Map([["a", { n: 3 }], ["b", { n: 2 }]]));
    assert.equal((await readNdjsonMap(file)).size, 0, "without tornTail the file counts as damaged");
    log.close();
    rmSync(file);
    log.add("d", { n: 4 });
    log.flush();
    assert.deepEqual(await readNdjsonMap(file, { tornTail: true }), new Map([["d", { n: 4 }]]));
    log.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
