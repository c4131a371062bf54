/**
 * Operator experience (issue 16), through the CLI as a child process: what a person sees and the
 * exit code, for the cases that sent operators the wrong way.
 */
import assert from "node:assert/strict";
import { chmod, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { runCli, startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { writeTree } from "../helpers/tree.ts";
import { startProxy } from "../helpers/proxy.ts";
import { setTimeout as delay } from "node:timers/promises";

const ctx = useServer();
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
// Root writes anywhere: an unwritable directory is only unwritable without these capabilities.
const NO_DAC = process.getuid?.() === 0 ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"] : [];

describe(`operator experience (${server})`, () => {
  test("status with no argument after a plain pull finds this machine's pullers by their state directories (exit 4 once one fails)", async () => {
    const bucket = await ctx.server.bucket("op-status");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "<p>hi</p>\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    const ns = ctx.tmp("ns");
    const [a, b] = [ctx.tmp("www-a"), ctx.tmp("www-b")];
    expectCode(await ctx.cli(["pull", url, a, ...ctx.flags(ns)]), 0);
    expectCode(await ctx.cli(["pull", url, b, ...ctx.flags(ns)]), 0);
    const ok = await ctx.cli(["status", "--state-dir", ns]);
    expectCode(ok, 0);
    for (const d of [a, b]) assert.match(ok.stdout, new RegExp(`^puller  OK    generation 1 of 1 .*  ${d.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} ← ${url}`, "m"));
    // One of them cannot reach its bucket any more: the same command says so, exit 4.
    expectCode(await ctx.cli(["pull", url, b, "--endpoint-url", "http://127.0.0.1:9", "--state-dir", ns, "--log-format", "json", "--timeout", "2s"]), 7);
    const bad = await ctx.cli(["status", "--state-dir", ns, "--json"]);
    expectCode(bad, 4);
    const pullers = (JSON.parse(bad.stdout) as { pullers: { docroot: string; status: string; generation: number }[] }).pullers;
    assert.deepEqual(pullers.map((p) => [p.docroot, p.status, p.generation]).sort(), [[a, "OK", 1], [b, "ERROR", 1]].sort());
  });

  for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    test(`${sig} in the middle of a push: one line "interrupted: N of M files sent, the next run continues", exit ${code}, no stack trace, no failed uploads`, async () => {
      const bucket = await ctx.server.bucket(`op-int-${code}`);
      const master = ctx.tmp("master");
      const url = `s3://${bucket}/site/`;
      const files: Record<string, string> = {};
      for (let i = 0; i < 60; i++) files[`f${i}.txt`] = `file ${i}\n`;
      await writeTree(master, files);
      const proxy = await startProxy(ctx.server.endpoint);
      try {
        // Every content PUT takes a while, so the signal lands with transfers in flight.
        proxy.fault = (q) => (q.method === "PUT" && /\/f\d+\.txt/.test(q.url) ? { kind: "delay", ms: 1500 } : { kind: "none" });
        for (const format of ["pretty", "json"]) {
          // The first run's requests must not satisfy the second's wait (it then stopped the second
          // run while it was still reading the head: at load 7, exit 7 instead of an interruption).
          proxy.reset();
          const ms = ctx.tmp("ms");
          const child = startCli(["push", master, url, "--endpoint-url", proxy.url, "--state-dir", ms, "--concurrency", "4", "--log-format", format]);
          await proxy.waitFor((q) => q.method === "PUT" && /\/f\d+\.txt/.test(q.url), 8000).catch((e) => { throw new Error(`${e}: ${JSON.stringify(proxy.requests.slice(0, 8))} ${child.out.stdout} ${child.out.stderr}`); });
          await delay(600);
          child.kill(sig);
          const r = await waitCli(child, 30_000);
          const all = `${r.stdout}\n${r.stderr}`;
          assert.equal(r.code, code, all);
          const lines = all.split("\n").filter((l) => /interrupted/.test(l));
          assert.equal(lines.length, 1, all);
          assert.match(lines[0] as string, /interrupted: \d+ of 60 files sent, the next run continues/);
          assert.doesNotMatch(all, /^\s+at /m, "no stack trace");
          assert.doesNotMatch(all, /upload failed|AbortError/i);
          assert.ok(all.split("\n").filter(Boolean).length <= 6, all);
        }
        // The next run continues and completes.
        proxy.fault = () => ({ kind: "none" });
        expectCode(await ctx.cli(["push", master, url, "--endpoint-url", proxy.url, "--state-dir", ctx.tmp("ms2"), "--log-format", "json"]), 0);
      } finally {
        await proxy.close();
      }
    });
  }

  test("SIGINT while a push reads the head (before any transfer): one \"interrupted\" line and exit 130, not \"cannot reach … (AbortError)\" and exit 7", async () => {
    const bucket = await ctx.server.bucket("op-int-head");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "<p>one</p>\n", "a.css": "a{}\n" });
    const proxy = await startProxy(ctx.server.endpoint);
    let release: () => void = () => undefined;
    const until = new Promise<void>((r) => (release = r));
    const isHeadGet = (q: { method: string; url: string }) => q.method === "GET" && /\/\.fansync\/head\.json/.test(q.url);
    try {
      proxy.fault = (q) => (isHeadGet(q) ? { kind: "hold", until } : { kind: "none" });
      // The held GET is in flight: the stop drains it for 1 s, then aborts it.
      const child = startCli(["push", master, url, "--endpoint-url", proxy.url, "--state-dir", ctx.tmp("ms"), "--log-format", "json"], { env: { FANSYNC_DRAIN_DEADLINE: "1s" } });
      await proxy.waitFor(isHeadGet, 20_000);
      child.kill("SIGINT");
      const r = await waitCli(child, 30_000);
      const all = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.code, 130, all);
      assert.equal(all.split("\n").filter((l) => /interrupted/.test(l)).length, 1, all);
      assert.doesNotMatch(all, /cannot reach|AbortError|^\s+at /m);
    } finally {
      release();
      await proxy.close();
    }
  });

  test("--stats: a run that is not on a terminal logs a progress line every interval (files, bytes, rate, ETA); a short run with the default logs none", async () => {
    const bucket = await ctx.server.bucket("op-stats");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    const files: Record<string, string> = {};
    for (let i = 0; i < 16; i++) files[`f${i}.txt`] = `file ${i}\n`;
    await writeTree(master, files);
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      proxy.fault = (q) => (q.method === "PUT" && /\/f\d+\.txt/.test(q.url) ? { kind: "delay", ms: 250 } : { kind: "none" });
      const r = await ctx.cli(["push", master, url, "--endpoint-url", proxy.url, "--state-dir", ctx.tmp("ms"), "--log-format", "json", "--concurrency", "2", "--stats", "400ms"]);
      expectCode(r, 0);
      const lines = r.logs.filter((l) => typeof l.msg === "string" && l.msg.startsWith("progress: "));
      assert.ok(lines.length >= 2, r.stdout);
      for (const l of lines) {
        assert.match(l.msg as string, /^progress: push \d+\/16 files, \d+ B of 118 B, .*\/s, ETA /);
        assert.equal(l.files, 16);
      }
      // The default (every 10 s when not on a terminal) says nothing about a run this short.
      proxy.fault = () => ({ kind: "none" });
      await writeTree(master, { "g.txt": "g\n" });
      const quick = await ctx.cli(["push", master, url, "--endpoint-url", proxy.url, "--state-dir", ctx.tmp("ms2"), "--log-format", "json"]);
      expectCode(quick, 0);
      assert.ok(!quick.logs.some((l) => String(l.msg).startsWith("progress: ")), quick.stdout);
    } finally {
      await proxy.close();
    }
  });

  test("--chmod D2775,F664 and --group: a file the master holds at 0640 lands readable by the web server's group, directories setgid; a bad rule is refused", async () => {
    const bucket = await ctx.server.bucket("op-chmod");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "<p>hi</p>\n", "sub/page.html": "<p>page</p>\n" });
    await chmod(path.join(master, "sub", "page.html"), 0o640);
    await chmod(path.join(master, "sub"), 0o750);
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    // Root may give any group; anyone else one of their own.
    const gid = process.getuid?.() === 0 ? 4242 : (process.getgid?.() ?? 0);
    const node = ctx.tmp("www");
    const ns = ctx.tmp("ns");
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ns), "--chmod", "D2775,F664", "--group", String(gid)]), 0);
    const { stat } = await import("node:fs/promises");
    const f = await stat(path.join(node, "sub", "page.html"));
    assert.equal((f.mode & 0o7777).toString(8), "664");
    assert.equal(f.gid, gid);
    const dir = await stat(path.join(node, "sub"));
    assert.equal((dir.mode & 0o7777).toString(8), "2775");
    assert.equal(dir.gid, gid);
    assert.equal(((await stat(path.join(node, "index.html"))).mode & 0o7777).toString(8), "664");
    // A second run changes nothing and keeps the modes.
    const again = await ctx.cli(["pull", url, node, ...ctx.flags(ns), "--verify", "--chmod", "D2775,F664", "--group", String(gid)]);
    expectCode(again, 0);
    assert.ok(!again.logs.some((l) => l.msg === "docroot differs from the manifest; repairing"), again.stdout);
    assert.equal(((await stat(path.join(node, "sub", "page.html"))).mode & 0o7777).toString(8), "664");
    // Without --group: a setgid docroot owned by the web server's group (README's quick start)
    // gives every file and directory a pull creates that group.
    const sg = ctx.tmp("www-setgid");
    const { chown } = await import("node:fs/promises");
    await chown(sg, process.getuid?.() ?? 0, gid);
    await chmod(sg, 0o2775);
    expectCode(await ctx.cli(["pull", url, sg, ...ctx.flags(ctx.tmp("ns3"))]), 0);
    assert.equal((await stat(path.join(sg, "sub", "page.html"))).gid, gid);
    assert.equal((await stat(path.join(sg, "sub"))).gid, gid);
    assert.equal((await stat(path.join(sg, "sub"))).mode & 0o2000, 0o2000, "subdirectories inherit setgid");
    const bad = await ctx.cli(["pull", url, ctx.tmp("www2"), ...ctx.flags(ctx.tmp("ns2")), "--chmod", "F99"]);
    assert.ok(bad.code === 2 || bad.code === 3, bad.stderr);
    assert.match(bad.stderr, /--chmod "F99"/);
  });

  test("a failed upload is logged as its error's type and message, without a stack trace (no build path in a release's logs); -v adds the stack", async () => {
    const bucket = await ctx.server.bucket("op-nostack");
    const master = ctx.tmp("master");
    await writeTree(master, { "a.txt": "a\n" });
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      proxy.fault = (q) => (q.method === "PUT" && q.url.includes("/a.txt") ? { kind: "status", status: 403, code: "AccessDenied" } : { kind: "none" });
      const args = ["push", master, `s3://${bucket}/site/`, "--endpoint-url", proxy.url, "--state-dir", ctx.tmp("ms"), "--log-format", "json"];
      const r = await ctx.cli(args);
      expectCode(r, 4);
      const failed = r.logs.filter((l) => l.msg === "upload failed");
      assert.equal(failed.length, 1, r.stdout);
      assert.match(JSON.stringify(failed[0]?.err), /access denied/i);
      assert.doesNotMatch(r.stdout + r.stderr, /"stack"|^\s+at /m);
      const verbose = await ctx.cli([...args, "-v"]);
      assert.match(verbose.stdout, /"stack"/);
    } finally {
      await proxy.close();
    }
  });

  test("pull into a docroot that does not exist: created when its parent exists (rsync's rule), refused with exit 9 when the parent is missing too", async () => {
    const bucket = await ctx.server.bucket("op-newroot");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "<p>hi</p>\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    const parent = ctx.tmp("parent");
    const fresh = path.join(parent, "www");
    const r = await ctx.cli(["pull", url, fresh, ...ctx.flags(ctx.tmp("ns"))]);
    expectCode(r, 0);
    assert.equal(await readFile(path.join(fresh, "index.html"), "utf8"), "<p>hi</p>\n");
    assert.ok(r.logs.some((l) => l.msg === "created the docroot (its parent exists)"));
    const unmounted = path.join(parent, "not-mounted", "www");
    const bad = await ctx.cli(["pull", url, unmounted, ...ctx.flags(ctx.tmp("ns2"))]);
    expectCode(bad, 9);
    assert.match(bad.stderr, /does not exist or cannot be read \(ENOENT, nor does its parent .*not-mounted\)/);
    assert.match(bad.stderr, /what to do: is the volume mounted\?/);
  });

  test("a deletion the master approves reaches every node past its --max-delete; until then the node applies nothing and its status line says what to run", async () => {
    const bucket = await ctx.server.bucket("op-approve");
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const url = `s3://${bucket}/site/`;
    const mflags = ctx.flags(ctx.tmp("ms"));
    const status = path.join(ctx.tmp("st"), "status.json");
    const nstate = ctx.tmp("ns");
    const pull = () => ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--max-delete", "2", "--status-file", status]);
    await writeTree(master, Object.fromEntries([["index.html", "v1\n"], ...Array.from({ length: 7 }, (_, i) => [`p${i}.html`, `${i}\n`])]));
    expectCode(await ctx.cli(["push", master, url, ...mflags]), 0);
    expectCode(await pull(), 0);
    for (const i of [0, 1, 2]) await rm(path.join(master, `p${i}.html`));
    await writeFile(path.join(master, "index.html"), "v2\n");
    expectCode(await ctx.cli(["push", master, url, ...mflags]), 0);
    const refused = await pull();
    expectCode(refused, 5);
    assert.equal(await readFile(path.join(node, "index.html"), "utf8"), "v1\n", "a refused generation applies nothing");
    const line = await readFile(status.replace(/\.json$/, ".txt"), "utf8");
    assert.match(line, /^ERROR 1 GuardError: refusing to delete 3 of 8 files .* -- if the master meant these deletions: run `fansync push --approve-deletes` there/);
    // The master approves once, for the whole fleet: nothing new to publish, the head records it.
    const approve = await ctx.cli(["push", master, url, ...mflags, "--approve-deletes"]);
    expectCode(approve, 0);
    assert.ok(approve.logs.some((l) => l.msg === "approved the head generation's deletions for every node" && l.approvedDeletes === 3), approve.stdout);
    expectCode(await pull(), 0);
    assert.equal(await readFile(path.join(node, "index.html"), "utf8"), "v2\n");
    await assert.rejects(readFile(path.join(node, "p0.html")));
    assert.match(await readFile(status.replace(/\.json$/, ".txt"), "utf8"), /^OK 2/);
  });

  test("a first pull with --delete-extraneous into a docroot holding a stray file downloads the site (the guard counts the site, not the stray)", async () => {
    const bucket = await ctx.server.bucket("op-extra");
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "hi\n", "a.html": "a\n", "b.html": "b\n" });
    await writeTree(node, { "stray.html": "left by hand\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("ns")), "--delete-extraneous"]), 0);
    assert.equal(await readFile(path.join(node, "index.html"), "utf8"), "hi\n");
    await assert.rejects(readFile(path.join(node, "stray.html")));
  });

  test("an error is printed once: on a terminal's pretty log only as the two stderr lines; in JSON once as a real error object", async () => {
    const bucket = await ctx.server.bucket("op-once");
    const missing = ctx.tmp("gone") + "/nope";
    const pretty = await ctx.cli(["push", missing, `s3://${bucket}/site/`, "--endpoint-url", ctx.server.endpoint, "--state-dir", ctx.tmp("st"), "--log-format", "pretty"]);
    expectCode(pretty, 9);
    assert.doesNotMatch(pretty.stdout, /does not exist/, "no pino block on the terminal");
    assert.equal(pretty.stderr.match(/^fansync: /gm)?.length, 1);
    assert.match(pretty.stderr, /^ {2}what to do: check the path$/m);
    const json = await ctx.cli(["push", missing, `s3://${bucket}/site/`, ...ctx.flags(ctx.tmp("st"))]);
    expectCode(json, 9);
    const errs = json.logs.filter((l) => l.level === 50);
    assert.equal(errs.length, 1);
    for (const k of ["type", "message", "code", "hint"]) assert.ok(k in (errs[0]?.error as object), `error.${k} in ${json.stdout}`);
    assert.equal((errs[0]?.error as { type: string; code: number }).type, "LocalIoError");
    assert.equal((errs[0]?.error as { code: number }).code, 9);
    assert.doesNotMatch(json.stdout, /"type":"Object"/);
  });

  test("under systemd (stdout is the journal): every JSON line carries its syslog priority (<3> for errors) and the error is written once, not again on stderr", async () => {
    const bucket = await ctx.server.bucket("op-journal");
    const missing = ctx.tmp("gone") + "/nope";
    // What systemd does: JOURNAL_STREAM names the device and inode of the stream stdout is.
    const asJournal = ["sh", "-c", 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/1) exec "$@"', "sh"];
    const r = await runCli(["push", missing, `s3://${bucket}/site/`, ...ctx.flags(ctx.tmp("st"))], { wrap: asJournal });
    expectCode(r, 9);
    const lines = r.stdout.split("\n").filter(Boolean);
    assert.ok(lines.length > 0 && lines.every((l) => /^<[0-7]>\{/.test(l)), r.stdout);
    assert.equal(lines.filter((l) => l.startsWith("<3>")).length, 1, r.stdout);
    assert.match(lines.find((l) => l.startsWith("<3>")) ?? "", /does not exist/);
    assert.doesNotMatch(r.stderr, /does not exist/, "once: the journal has it from stdout");
    // stdout and stderr into one pipe (cron's `2>&1 | logger`): the JSON line alone, not three lines.
    const both = await runCli(["push", missing, `s3://${bucket}/site/`, ...ctx.flags(ctx.tmp("st"))], { wrap: ["sh", "-c", 'exec "$@" 2>&1', "sh"] });
    expectCode(both, 9);
    assert.equal(both.stdout.split("\n").filter((l) => l.includes("does not exist")).length, 1, both.stdout);
    // Redirected elsewhere (JOURNAL_STREAM inherited but stale), nothing changes.
    const plain = await ctx.cli(["push", missing, `s3://${bucket}/site/`, ...ctx.flags(ctx.tmp("st"))], { JOURNAL_STREAM: "1:1" });
    expectCode(plain, 9);
    assert.ok(plain.stdout.startsWith("{"), plain.stdout);
    assert.match(plain.stderr, /^fansync: .*does not exist/m);
  });

  test("SIGHUP: a daemon reopens its --log-file (logrotate), re-reads a config file that validates, keeps the old one when it does not, and never exits", async () => {
    const bucket = await ctx.server.bucket("op-hup");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "<p>hi</p>\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    const dir = ctx.tmp("hup");
    const log = path.join(dir, "fansync.log");
    const conf = path.join(dir, "node.yaml");
    const node = ctx.tmp("www");
    await writeFile(conf, `sources: [${url}]\ndocroot: ${node}\ninterval: 200ms\nwatch: true\n`);
    const d = startCli(["pull", "--config", conf, "--endpoint-url", ctx.server.endpoint, "--state-dir", ctx.tmp("ns"), "--log-file", log]);
    const logText = () => readFile(log, "utf8").catch(() => "");
    const until = async (what: string, f: () => Promise<boolean>) => {
      for (let i = 0; i < 150; i++) {
        if (await f()) return;
        if (d.exitCode !== null || d.signalCode !== null) throw new Error(`exited (${d.exitCode ?? d.signalCode}) waiting for ${what}: ${d.out.stderr}`);
        await delay(100);
      }
      throw new Error(`timed out waiting for ${what}`);
    };
    try {
      await until("the first pull", async () => (await logText()).includes("docroot at generation"));
      // logrotate: move the file away, then HUP; the daemon writes to a new file at the old name.
      await rename(log, `${log}.1`);
      d.kill("SIGHUP");
      await until("a reopened log file", async () => (await logText()).includes("reopened the log file"));
      // A config that does not validate: kept running on the old one, saying why.
      await writeFile(conf, `sources: [${url}]\ndocroot: ${node}\ninterval: nonsense\nwatch: true\n`);
      d.kill("SIGHUP");
      await until("the refused config", async () => /config file not reloaded.*interval/.test(await logText()));
      // A valid one: applied.
      await writeFile(conf, `sources: [${url}]\ndocroot: ${node}\ninterval: 300ms\nwatch: true\n`);
      d.kill("SIGHUP");
      await until("the reloaded config", async () => /"intervalMs":300\b/.test(await logText()));
      assert.ok(d.exitCode === null && d.signalCode === null, "still running");
    } finally {
      d.kill("SIGTERM");
    }
    expectCode(await waitCli(d, 30_000), 0);
  });

  test("a mistyped flag: the error, commander's suggestion and one line pointing to --help, not the whole help (exit 2)", async () => {
    const r = await ctx.cli(["push", "/tmp", "s3://some-bucket/x", "--dry-rn"]);
    expectCode(r, 2);
    assert.match(r.stderr, /unknown option '--dry-rn'/);
    assert.match(r.stderr, /Did you mean --dry-run\?/);
    assert.match(r.stderr, /\(run the command with --help for its options\)/);
    assert.ok(r.stderr.trim().split("\n").length <= 4, r.stderr);
  });

  test("rsync and rclone habits: -n is a dry run, -q keeps only warnings, -v adds debug lines, --log-file takes the log; pretty lines are one per event with sizes for people", async () => {
    const bucket = await ctx.server.bucket("op-habits");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "x".repeat(3000), "a.css": "a" });
    const st = ctx.tmp("st");
    const base = ["--endpoint-url", ctx.server.endpoint, "--state-dir", st];
    const dry = await ctx.cli(["push", master, url, ...base, "--log-format", "json", "-n"]);
    expectCode(dry, 0);
    assert.equal(dry.logs.filter((l) => l.msg === "would upload").length, 2);
    assert.ok(dry.logs.some((l) => l.msg === "dry run: nothing changed"));
    const quiet = await ctx.cli(["push", master, url, ...base, "--log-format", "json", "-q"]);
    expectCode(quiet, 0);
    assert.equal(quiet.logs.filter((l) => (l.level as number) < 40).length, 0, quiet.stdout);
    const file = path.join(ctx.tmp("logs"), "sub", "fansync.log");
    await writeTree(master, { "a.css": "changed" });
    const verbose = await ctx.cli(["push", master, url, ...base, "-v", "--log-file", file]);
    expectCode(verbose, 0);
    assert.equal(verbose.stdout, "", "the log went to the file");
    const lines = (await readFile(file, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { level: number; msg: string });
    assert.ok(lines.some((l) => l.level === 20), "debug lines with -v");
    await writeTree(master, { "index.html": "y".repeat(3000) });
    const pretty = await ctx.cli(["push", master, url, ...base, "--log-format", "pretty"]);
    expectCode(pretty, 0);
    const published = pretty.stdout.split("\n").filter((l) => l.includes("published generation"));
    assert.equal(published.length, 1, pretty.stdout);
    assert.match(published[0] as string, /generation.*2/);
    assert.match(published[0] as string, /bytes.*(KiB|B)/);
    assert.match(published[0] as string, /changed.*index\.html/, "the info line names what changed");
    assert.ok(!pretty.stdout.split("\n").some((l) => /^\s+\w+: /.test(l)), "no field on a line of its own");
  });

  test("a configuration that can never run (no region, no credentials, an unknown profile): every command, daemons included, exits 3 at once with one line naming what to set", async () => {
    const aws = ctx.tmp("aws");
    const base = { AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined, AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: undefined, AWS_PROFILE: undefined, AWS_CONFIG_FILE: path.join(aws, "config"), AWS_SHARED_CREDENTIALS_FILE: path.join(aws, "credentials"), AWS_EC2_METADATA_DISABLED: "true" };
    const keys = { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "example" };
    const noKeys = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined };
    const st = ["--state-dir", ctx.tmp("st"), "--log-format", "json"];
    const cases: [string, string[], Record<string, string | undefined>, RegExp][] = [
      ["replicate --watch, no region", ["replicate", "s3://primary-b/site/", "s3://region-b/site/", "--watch", ...st], { ...base, ...keys }, /no AWS region.*AWS_REGION/],
      ["pull --watch, no region", ["pull", "s3://primary-b/site/", ctx.tmp("www"), "--watch", ...st], { ...base, ...keys }, /no AWS region.*AWS_REGION/],
      ["pull --watch, no credentials", ["pull", "s3://primary-b/site/", ctx.tmp("www"), "--watch", ...st], { ...base, ...noKeys, AWS_REGION: "eu-west-1" }, /no AWS credentials found/],
      ["watch, unknown profile", ["watch", ctx.tmp("master"), "s3://primary-b/site/", "--profile", "nosuchprofile", ...st], { ...base, ...noKeys, AWS_REGION: "eu-west-1" }, /nosuchprofile/],
    ];
    for (const [what, args, env, text] of cases) {
      const r = await runCli(args, { env, timeoutMs: 20_000 });
      assert.equal(r.code, 3, `${what}: ${r.stdout}${r.stderr}`);
      const said = r.stderr.split("\n").filter((l) => l.startsWith("fansync: "));
      assert.equal(said.length, 1, `${what}: ${r.stderr}`);
      assert.match(said[0] as string, text, what);
      assert.doesNotMatch(`${r.stdout}${r.stderr}`, /Region is missing/, what);
    }
  });

  test("no credentials at all, or a --profile that does not exist: exit 3 naming the profile; a server that accepts and never answers: --timeout gives up well within a cron interval", async () => {
    const noCreds = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined, AWS_CONFIG_FILE: path.join(ctx.tmp("aws"), "config"), AWS_SHARED_CREDENTIALS_FILE: path.join(ctx.tmp("aws"), "credentials"), AWS_EC2_METADATA_DISABLED: "true" };
    const r = await ctx.cli(["pull", "s3://some-bucket/site/", ctx.tmp("node"), ...ctx.flags(ctx.tmp("st")), "--profile", "nosuchprofile"], noCreds);
    expectCode(r, 3);
    assert.match(r.stderr, /no AWS credentials found/);
    assert.match(r.stderr, /nosuchprofile/);
    // A TCP server that accepts every connection and never says a word.
    const net = await import("node:net");
    const sockets: import("node:net").Socket[] = [];
    const mute = net.createServer((s) => sockets.push(s));
    await new Promise<void>((res) => mute.listen(0, "127.0.0.1", () => res()));
    try {
      const port = (mute.address() as { port: number }).port;
      const t0 = Date.now();
      const hung = await ctx.cli(["pull", "s3://some-bucket/site/", ctx.tmp("node"), "--endpoint-url", `http://127.0.0.1:${port}`, "--state-dir", ctx.tmp("st"), "--log-format", "json", "--timeout", "1s"]);
      expectCode(hung, 7);
      assert.ok(Date.now() - t0 < 30_000, `gave up after ${Date.now() - t0} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      mute.close();
    }
  });

  test("config keys another command reads are reported, not refused; a key no command knows is refused with a suggestion", async () => {
    const bucket = await ctx.server.bucket("op-keys");
    const master = ctx.tmp("master");
    await writeTree(master, { "index.html": "k\n" });
    const cfgFile = path.join(ctx.tmp("cfg"), "master.yaml");
    await writeFile(cfgFile, `docroot: ${master}\ntarget: s3://${bucket}/site/\ndelay: 1s\n`);
    const ok = await ctx.cli(["push", "--config", cfgFile, ...ctx.flags(ctx.tmp("st"))]);
    expectCode(ok, 0);
    assert.ok(ok.logs.some((l) => l.level === 40 && String(l.msg).includes("config keys not used by `push`, ignored: delay (watch, sync)")), ok.stdout);
    await writeFile(cfgFile, `docroot: ${master}\ntarget: s3://${bucket}/site/\ndelai: 1s\n`);
    const bad = await ctx.cli(["push", "--config", cfgFile, ...ctx.flags(ctx.tmp("st"))]);
    expectCode(bad, 3);
    assert.match(bad.stderr, /delai: unknown key \(did you mean "delay"\?\)/);
  });

  test("an unwritable state directory: exit 9 saying which and what to do, not a stack trace", async () => {
    const bucket = await ctx.server.bucket("op-state");
    const master = ctx.tmp("master");
    await writeTree(master, { "index.html": "s\n" });
    const st = ctx.tmp("st");
    await chmod(st, 0o500);
    try {
      const r = await runCli(["push", master, `s3://${bucket}/site/`, ...ctx.flags(st)], { wrap: NO_DAC });
      expectCode(r, 9);
      assert.match(r.stderr, /cannot write the state directory .* \(EACCES\)/);
      assert.match(r.stderr, /what to do: make it writable by the user fansync runs as, or pass --state-dir/);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    } finally {
      await chmod(st, 0o700);
    }
  });

  test("watch started on a head a rollback published warns, naming the generation, before it publishes over it", async () => {
    const bucket = await ctx.server.bucket("op-rbwatch");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    const flags = ctx.flags(ctx.tmp("ms"));
    await writeTree(master, { "index.html": "one\n", "a.html": "a\n" });
    expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
    // The old bytes of index.html stay in the bucket under another name: the rollback needs no --from.
    await writeTree(master, { "index.html": "two\n", "old.html": "one\n" });
    expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
    expectCode(await ctx.cli(["rollback", url, "--to", "1", ...flags]), 0);
    const w = startCli(["watch", master, url, ...flags, "--delay", "200ms", "--max-delay", "1s"]);
    let warned = false;
    for (let i = 0; i < 60 && !warned; i++) {
      await new Promise((r) => setTimeout(r, 200));
      warned = w.out.stdout.includes("was published by a rollback");
    }
    w.kill("SIGTERM");
    const res = await waitCli(w);
    assert.ok(warned, res.stdout.slice(-3000));
    const line = res.logs.find((l) => String(l.msg).includes("was published by a rollback"));
    assert.equal(line?.generation, 3);
    assert.equal(line?.level, 40);
    assert.equal(res.code, 0, res.stderr);
  });
});
