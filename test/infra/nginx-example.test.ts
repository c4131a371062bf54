/**
 * docs/examples/nginx-fansync.conf is a configuration nginx accepts (`nginx -t`), serving the
 * status file from the place the shipped node.yaml writes it.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parse } from "yaml";

const ROOT = path.join(import.meta.dirname, "..", "..");
const EXAMPLE = path.join(ROOT, "docs", "examples", "nginx-fansync.conf");
// FANSYNC_NGINX: an nginx binary not on PATH (e.g. extracted from Debian's package without installing it).
const nginx = [process.env.FANSYNC_NGINX, "/usr/sbin/nginx", "nginx"].find((n) => n && spawnSync(n, ["-v"]).status === 0);
if (!nginx) console.log("# SKIP nginx -t: no nginx (install Debian's nginx, or set FANSYNC_NGINX to its binary)");

test("the nginx example serves the status file where node.yaml writes it", async () => {
  const conf = await readFile(EXAMPLE, "utf8");
  const node = parse(await readFile(path.join(ROOT, "infra", "config", "node-us.yaml"), "utf8")) as { statusFile: string; docroot: string };
  assert.ok(conf.includes(`alias ${node.statusFile.replace(/\.json$/, ".txt")};`), "the .txt beside statusFile");
  assert.ok(conf.includes(`root ${node.docroot};`));
});

test("nginx -t accepts the example", { skip: nginx ? false : "no nginx" }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "fansync-nginx-"));
  try {
    const main = path.join(dir, "nginx.conf");
    await writeFile(main, [
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log;`,
      "events {}",
      "http {",
      `  access_log off;`,
      ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${dir}/${t};`),
      `  include ${EXAMPLE};`,
      "}",
      "",
    ].join("\n"));
    const r = await promisify(execFile)(nginx as string, ["-t", "-p", dir, "-c", main]).catch((e: { stderr: string }) => ({ stderr: e.stderr, failed: true }));
    assert.ok(!("failed" in r), r.stderr);
    assert.match(r.stderr, /syntax is ok/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
