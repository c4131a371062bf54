import assert from "node:assert/strict";
import { test } from "node:test";
import { changesOfJournal, diffFileMaps, formatHistory, type GenerationInfo, parseGenerationKey } from "../../src/core/history.ts";
import { type Entry, type FileMap, JOURNAL_FORMAT, metaKeys, parseJournal, serializeJournal } from "../../src/core/manifest.ts";

const e = (path: string, c: string, mode = 0o644): Entry => ({ path, size: 3, mtimeMs: 1, mode, sha256: c.repeat(64).slice(0, 64), etag: `"${c}"` });
const map = (...es: Entry[]): FileMap => new Map(es.map((x) => [x.path, x]));

test("generation keys: only this directory's well-formed names count", () => {
  const meta = "www/.fansync/";
  const cases: [string, number | undefined][] = [
    [metaKeys.manifest(meta, 42), 42],
    [metaKeys.journal(meta, 7).replace("journal/", "manifests/"), 7],
    [`${meta}manifests/42.ndjson.gz`, undefined],
    [`${meta}manifests/000000000000.ndjson.gz`, undefined],
    [`${meta}manifests/000000000042.ndjson.gz.tmp`, undefined],
    [`other/.fansync/manifests/000000000042.ndjson.gz`, undefined],
  ];
  for (const [key, want] of cases) assert.equal(parseGenerationKey(key, `${meta}manifests/`), want, key);
  assert.equal(parseGenerationKey(metaKeys.journal(meta, 9), `${meta}journal/`), 9);
});

test("a journal's puts are added or changed by whether the previous generation had the path", () => {
  const prev = map(e("a", "a"), e("b", "b"), e("gone", "g"));
  const j = { format: JOURNAL_FORMAT, generation: 2, puts: [e("new", "n"), e("b", "x"), e("a", "a", 0o600)], deletes: ["gone"], time: "t" } as const;
  assert.deepEqual(changesOfJournal(prev, j), { added: ["new"], changed: ["a", "b"], deleted: ["gone"] });
});

test("two manifests diff into added, changed (bytes or metadata) and deleted", () => {
  const a = map(e("same", "s"), e("edit", "1"), e("chmod", "c"), e("old", "o"));
  const b = map(e("same", "s"), e("edit", "2"), e("chmod", "c", 0o600), e("new", "n"));
  assert.deepEqual(diffFileMaps(a, b), { added: ["new"], changed: ["chmod", "edit"], deleted: ["old"] });
});

test("a journal keeps its writer; one written before the field existed has none", () => {
  const withWriter = parseJournal(serializeJournal({ format: JOURNAL_FORMAT, generation: 3, puts: [], deletes: [], time: "t", writer: "host:1:ab" }), 3);
  assert.equal(withWriter.writer, "host:1:ab");
  const old = parseJournal(Buffer.from(JSON.stringify({ format: JOURNAL_FORMAT, generation: 3, puts: [], deletes: [], time: "t" })), 3);
  assert.equal(old.writer, undefined);
});

test("the printed history: counts, the no-journal note, unsplit journals and the verbose cap", () => {
  const many = Array.from({ length: 25 }, (_, i) => `p${String(i).padStart(2, "0")}`);
  const rows: GenerationInfo[] = [
    { generation: 4, current: true, time: "T4", writer: "w4", files: 3, bytes: 2048, journal: true, changes: { added: many, changed: ["c"], deleted: [] } },
    { generation: 3, current: false, time: "T3", writer: undefined, files: 2, bytes: 10, journal: false, changes: undefined },
    { generation: 2, current: false, time: "T2", writer: undefined, files: 2, bytes: 10, journal: false, changes: { added: [], changed: ["x"], deleted: ["y"] } },
    { generation: 1, current: false, time: "T1", writer: "w1", files: 2, bytes: 10, journal: true, changes: undefined, unsplit: { puts: ["a", "b"], deleted: ["z"] } },
  ];
  const text = formatHistory("s3://b/p/", rows, { verbose: true, cap: 20, retained: [1, 2, 3, 4] });
  assert.match(text, /^s3:\/\/b\/p\/: 4 generation\(s\) retained \(1\.\.4\)\n/);
  assert.match(text, /generation 4 \(head\)  T4  by w4\n  3 file\(s\), 2\.0 KiB; \+25 added ~1 changed -0 deleted\n/);
  assert.match(text, /    \+ p19\n    \.\.\. and 6 more\n/);
  assert.match(text, /generation 3  T3\n  2 file\(s\), 10 B; \(no journal: full manifest only\)\n/);
  assert.match(text, /\+0 added ~1 changed -1 deleted \(no journal: full manifest only\)\n    ~ x\n    - y\n/);
  assert.match(text, /2 added or changed -1 deleted \(generation 0 is pruned\)\n    \* a\n    \* b\n    - z\n$/);
  const terse = formatHistory("s3://b/p/", rows, { verbose: false, retained: [1, 2, 3, 4] });
  assert.ok(!terse.includes("    + p00"));
});
