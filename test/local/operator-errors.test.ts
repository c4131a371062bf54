/** Local errors that must say what to do (issue 23): a missing -c file, a read-only docroot under systemd. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { toLocal } from "../../src/adapters/safe-write.ts";
import { FANSYNC_BIN } from "../helpers/cli.ts";

test("a --config file that does not exist: exit 2, naming the file and where the .deb puts the examples", () => {
  const r = spawnSync(process.execPath, [FANSYNC_BIN, "pull", "-c", "/nonexistent/node.yaml"], { encoding: "utf8" });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^fansync: cannot read config file \/nonexistent\/node\.yaml: ENOENT$/m);
  assert.match(r.stderr, /^ {2}what to do: .*\/etc\/fansync\//m);
});

test("a read-only docroot names the systemd setting that makes it writable", () => {
  const e = toLocal(Object.assign(new Error("read-only file system"), { code: "EROFS" }), "/srv/www/index.html");
  assert.match(e.hint ?? "", /ReadWritePaths=/);
  assert.match(e.hint ?? "", /systemctl edit fansync-pull/);
});
