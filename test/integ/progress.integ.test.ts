/**
 * The progress bar as a person sees it: the real CLI under a pseudo-terminal (util-linux `script`),
 * pushing and pulling a tree big enough for the bar to appear; and the same runs with
 * `--log-format json`, `--no-progress` or plain pipes, which must print no bar at all.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { FANSYNC_BIN, parseLogs, runCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { type Proxy, startProxy } from "../helpers/proxy.ts";

const ctx = useServer();
const haveScript = spawnSync("script", ["--version"]).status === 0;
const skip = haveScript ? false : "util-linux `script` is not installed (needed for a pseudo-terminal)";

// 300 files, 4 MiB, one transfer at a time, each request held 10 ms by a proxy: each run lasts
// seconds on every server (a fast server and the lean data path finished a pull before the bar's
// first frame), without a test-only knob; the TTY runs assert the bar did appear.
const FILES = 300;
const SLOW = ["--concurrency", "1"];
const REQUEST_DELAY_MS = 10;

async function writeSource(root: string): Promise<void> {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < FILES; i++) files[`d${i % 7}/f${i}.bin`] = seededBytes(i + 1, i % 10 === 0 ? 64 * 1024 : 8 * 1024 + i);
  await writeTree(root, files);
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Run `fansync <args>` with stdout and stderr on a pseudo-terminal; returns everything it drew. */
async function runInTty(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; raw: string }> {
  const command = [process.execPath, FANSYNC_BIN, ...args].map(quote).join(" ");
  // -q quiet, -f flush as written, -e the command's exit code, -c the command; no typescript file.
  const child = spawn("script", ["-qfec", command, "/dev/null"], {
    // A terminal a person would use: not a CI log, not a dumb terminal.
    env: { ...process.env, TERM: "xterm-256color", CI: undefined, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let raw = "";
  child.stdout.on("data", (d: Buffer) => (raw += d.toString()));
  child.stderr.on("data", (d: Buffer) => (raw += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, raw };
}

/**
 * What the terminal shows at the end: carriage returns, cursor-to-column, erase-line and
 * erase-right applied, colours dropped. A bar that was not cleared, or a log line written into
 * the middle of one, is still there.
 */
function screen(raw: string): string[] {
  const lines: string[] = [];
  let line: string[] = [];
  let col = 0;
  const tokens = raw.match(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]|[\s\S]/gu) ?? [];
  for (const t of tokens) {
    if (t === "\r") col = 0;
    else if (t === "\n") {
      lines.push(line.join("").trimEnd());
      line = [];
      col = 0;
    } else if (t.startsWith("\x1b")) {
      const m = /^\x1b\[(\d*)([GK])$/.exec(t);
      if (m?.[2] === "G") col = Math.max(0, Number(m[1] || "1") - 1);
      else if (m?.[2] === "K" && m[1] === "2") line = [];
      else if (m?.[2] === "K") line = line.slice(0, col);
    } else {
      while (line.length < col) line.push(" ");
      line[col++] = t;
    }
  }
  lines.push(line.join("").trimEnd());
  return lines.filter((l) => l !== "");
}

const plain = (raw: string) => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, "");
const BAR_TEXT = /█|░|\d+\/\d+ files|ETA /;

/** The bar was drawn with all its parts, then cleared, and the summary line stands on its own. */
function assertBarShownAndCleared(raw: string, role: string, summary: string): void {
  const frame = new RegExp(`${role} \\[[█░]+\\] +\\d+%  \\d+/${FILES} files  [\\d.]+ (B|KiB|MiB)/4\\.\\d MiB  [\\d.]+ (B|KiB|MiB)/s  ETA (\\d+s|--)`);
  assert.match(plain(raw), frame, `a ${role} bar frame:\n${plain(raw).slice(0, 2000)}`);
  assert.match(plain(raw), new RegExp(`${FILES}/${FILES} files`), "the bar's last frame counts every file");
  const shown = screen(raw);
  assert.deepEqual(shown.filter((l) => BAR_TEXT.test(l)), [], "no bar left on the screen");
  // The summary starts its own line: the bar was stopped before it, not overwritten by it. Its
  // fields follow on the same line (pretty logs are one line per event).
  assert.ok(shown.some((l) => new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] INFO: ${summary}( \\{.*\\})?$`).test(l)), `summary line "${summary}" on its own:\n${shown.join("\n")}`);
}

/** Output that is JSON lines only, with no bar and no terminal control sequences. */
function assertJsonOnly(out: string, what: string): void {
  // Progress as JSON log lines (--stats, on by default off a terminal) is fine; a bar is not.
  assert.doesNotMatch(out, /█|░/, `${what}: no bar text`);
  assert.doesNotMatch(out, /\x1b/, `${what}: no escape sequences`);
  const lines = out.split(/\r?\n/).filter((l) => l.trim() !== "");
  assert.ok(lines.length > 0, `${what}: logs were written`);
  for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `${what}: not a JSON line: ${l}`);
}

describe(`progress bar (${serverLabel()})`, { skip }, () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy(ctx.server.endpoint);
    proxy.fault = () => ({ kind: "delay", ms: REQUEST_DELAY_MS });
  });
  after(() => proxy.close());

  test("on a terminal: push and pull draw a bar, clear it before the summary, and land the exact tree", async () => {
    const bucket = await ctx.server.bucket("progress-tty");
    const src = ctx.tmp("src");
    const dst = ctx.tmp("dst");
    await writeSource(src);
    const url = `s3://${bucket}/www`;
    const common = ["--endpoint-url", proxy.url, ...SLOW];

    const pushed = await runInTty(["push", src, url, "--state-dir", ctx.tmp("mstate"), ...common]);
    assert.equal(pushed.code, 0, plain(pushed.raw).slice(-3000));
    assertBarShownAndCleared(pushed.raw, "push", "published generation");

    const pulled = await runInTty(["pull", url, dst, "--state-dir", ctx.tmp("nstate"), ...common]);
    assert.equal(pulled.code, 0, plain(pulled.raw).slice(-3000));
    assertBarShownAndCleared(pulled.raw, "pull", "docroot at generation");
    assert.deepEqual(await snapshot(dst), await snapshot(src), "the pulled tree equals the source");

    // --no-progress on the same terminal: pretty logs, no bar.
    const quiet = await runInTty(["push", src, `${url}-quiet`, "--state-dir", ctx.tmp("qstate"), "--no-progress", ...common]);
    assert.equal(quiet.code, 0, plain(quiet.raw).slice(-3000));
    assert.doesNotMatch(plain(quiet.raw), BAR_TEXT);
    assert.match(plain(quiet.raw), /INFO: published generation/);
    const quietPull = await runInTty(["pull", url, ctx.tmp("dst-quiet"), "--state-dir", ctx.tmp("qnstate"), "--no-progress", ...common]);
    assert.equal(quietPull.code, 0, plain(quietPull.raw).slice(-3000));
    assert.doesNotMatch(plain(quietPull.raw), BAR_TEXT);
  });

  test("--log-format json on a terminal, or no terminal at all: JSON lines only, never a bar", async () => {
    const bucket = await ctx.server.bucket("progress-json");
    const src = ctx.tmp("src");
    await writeSource(src);
    const url = `s3://${bucket}/www`;
    const common = ["--endpoint-url", proxy.url, ...SLOW];

    // A terminal, but JSON asked for: stdout and stderr (both the terminal here) hold JSON only.
    const tty = await runInTty(["push", src, url, "--state-dir", ctx.tmp("mstate"), "--log-format", "json", ...common]);
    assert.equal(tty.code, 0, tty.raw.slice(-3000));
    assertJsonOnly(tty.raw, "push --log-format json on a TTY");
    const ttyPull = await runInTty(["pull", url, ctx.tmp("dst"), "--state-dir", ctx.tmp("nstate"), "--log-format", "json", ...common]);
    assert.equal(ttyPull.code, 0, ttyPull.raw.slice(-3000));
    assertJsonOnly(ttyPull.raw, "pull --log-format json on a TTY");

    // Pipes (cron, systemd, CI): no --log-format at all, and still nothing but JSON on stdout.
    const piped = await runCli(["push", src, `${url}-piped`, "--state-dir", ctx.tmp("pstate"), ...common], { env: { TERM: "xterm-256color" } });
    expectCode(piped, 0);
    assertJsonOnly(piped.stdout, "push stdout through a pipe");
    assert.doesNotMatch(piped.stderr, BAR_TEXT);
    assert.doesNotMatch(piped.stderr, /\x1b/);
    assert.ok(parseLogs(piped.stdout).some((l) => l.msg === "published generation"));
    const dst = ctx.tmp("dst-piped");
    const pipedPull = await runCli(["pull", url, dst, "--state-dir", ctx.tmp("pnstate"), ...common], { env: { TERM: "xterm-256color" } });
    expectCode(pipedPull, 0);
    assertJsonOnly(pipedPull.stdout, "pull stdout through a pipe");
    assert.doesNotMatch(pipedPull.stderr, BAR_TEXT);
    assert.doesNotMatch(pipedPull.stderr, /\x1b/);
    assert.deepEqual(await snapshot(dst), await snapshot(src));
  });
});
