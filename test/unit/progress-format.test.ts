import assert from "node:assert/strict";
import { test } from "node:test";
import {
  etaSeconds, formatEta, formatProgressLine, parseForeground, type ProgressContext, type ProgressFrame, sampleRate, shouldShowProgress, startRate, workOf,
} from "../../src/core/progress-format.ts";

const human: ProgressContext = { stderrIsTTY: true, logFormat: undefined, progress: true, foreground: true, env: { TERM: "xterm-256color" } };

test("a bar only for a human watching a terminal", () => {
  const cases: [string, Partial<ProgressContext>, boolean][] = [
    ["TTY, format chosen from stdout", {}, true],
    ["TTY, --log-format pretty", { logFormat: "pretty" }, true],
    ["foreground unknown (not Linux)", { foreground: undefined }, true],
    ["TERM unset", { env: {} }, true],
    ["CI=false", { env: { CI: "false" } }, true],
    ["CI=0", { env: { CI: "0" } }, true],
    ["CI empty", { env: { CI: "" } }, true],
    ["--log-format json", { logFormat: "json" }, false],
    ["stderr not a TTY", { stderrIsTTY: false }, false],
    ["--no-progress", { progress: false }, false],
    ["CI=true", { env: { CI: "true" } }, false],
    ["CI=1", { env: { CI: "1" } }, false],
    ["TERM=dumb", { env: { TERM: "dumb" } }, false],
    ["sent to the background", { foreground: false }, false],
  ];
  for (const [what, change, want] of cases) assert.equal(shouldShowProgress({ ...human, ...change }), want, what);
});

test("foreground is read from /proc/self/stat, whatever the command's name holds", () => {
  const cases: [string, boolean | undefined][] = [
    ["24702 (node) R 24701 24701 24701 34816 24701 4194560", true],
    ["24702 (node) S 24701 24710 24701 34816 24701 4194560", false], // pgrp 24710 is not the terminal's
    ["24711 (node) R 24710 24698 21824 0 -1 4194560", false], // no controlling terminal
    ["7 (we ird) (x) R 6 7 7 34816 7 0", true],
    ["garbage", undefined],
    ["1 (init) S 0", undefined],
    ["1 (init) S 0 a b c d", undefined],
  ];
  for (const [text, want] of cases) assert.equal(parseForeground(text), want, text);
});

test("the rate is smoothed over time, not over redraws", () => {
  let r = startRate(0, 0);
  assert.equal(r.perSecond, undefined);
  r = sampleRate(r, 500, 1000);
  assert.equal(r.perSecond, 2000, "the first interval is taken as it is");
  assert.equal(sampleRate(r, 500, 5000), r, "no time passed: no new sample");
  // A burst moves the average only part of the way; the same burst sampled twice as often ends
  // close to where it ends sampled once.
  const once = sampleRate(r, 1500, 1000 + 10_000);
  const twice = sampleRate(sampleRate(r, 1000, 1000 + 5000), 1500, 1000 + 10_000);
  assert.ok((once.perSecond as number) > 2000 && (once.perSecond as number) < 10_000);
  assert.ok(Math.abs((once.perSecond as number) - (twice.perSecond as number)) < 0.05 * (once.perSecond as number));
  // A steady rate converges on itself.
  let steady = startRate(0, 0);
  for (let t = 100; t <= 20_000; t += 100) steady = sampleRate(steady, t, t * 3);
  assert.ok(Math.abs((steady.perSecond as number) - 3000) < 1);
});

test("ETA text", () => {
  const cases: [number | undefined, string][] = [
    [undefined, "--"], [Infinity, "--"], [Number.NaN, "--"], [-1, "--"],
    [0, "0s"], [0.2, "1s"], [42, "42s"], [59.5, "1m00s"], [60, "1m00s"], [185, "3m05s"], [3599, "59m59s"],
    [3600, "1h00m"], [7620, "2h07m"], [100 * 3600, ">99h"],
  ];
  for (const [s, want] of cases) assert.equal(formatEta(s), want, String(s));
});

test("work counts files and bytes, so copies and empty files advance the bar", () => {
  const counts = { files: 4, bytes: 0, filesDone: 2, bytesDone: 0, failed: 1 };
  const w = workOf(counts);
  assert.equal(w.done / w.total, 3 / 4);
  assert.equal(etaSeconds(counts, undefined), undefined);
  assert.equal(etaSeconds(counts, 0), undefined);
  assert.equal(etaSeconds(counts, w.total / 4), 1);
});

test("the line fits the terminal: the bar shrinks, then goes, then the text is cut", () => {
  const f: ProgressFrame = { role: "push", files: 300, bytes: 4.6 * 1024 * 1024, filesDone: 126, bytesDone: 1.9 * 1024 * 1024, failed: 0, bytesPerSecond: 3.1 * 1024 * 1024, etaSeconds: 1.4 };
  const cases: [number, RegExp][] = [
    [120, /^push \[█+░+\]  4\d%  126\/300 files  1\.9 MiB\/4\.6 MiB  3\.1 MiB\/s  ETA 2s$/],
    [80, /^push \[█+░+\] .*ETA 2s$/],
    [60, /^push  4\d%  126\/300 files  1\.9 MiB\/4\.6 MiB  3\.1 MiB\/s  ETA 2s$/],
    [20, /^push  4\d%  126\/300 f$/],
  ];
  for (const [width, re] of cases) {
    const line = formatProgressLine(f, width);
    assert.match(line, re, `width ${width}: ${line}`);
    assert.ok(line.length <= width, `width ${width}: ${line.length} columns`);
  }
  const wide = formatProgressLine(f, 200);
  assert.equal(/\[(.*)\]/.exec(wide)?.[1]?.length, 30, "the graphic stops growing");
  assert.match(formatProgressLine({ ...f, bytesPerSecond: undefined, etaSeconds: undefined, failed: 2 }, 200), /--\/s  ETA --  2 failed$/);
  assert.match(formatProgressLine({ ...f, filesDone: 300, bytesDone: f.bytes }, 80), /\[█+\] 100%/);
  assert.match(formatProgressLine({ ...f, files: 0, bytes: 0, filesDone: 0, bytesDone: 0 }, 80), /100%/);
});
