// The cron line and the example configs: shape, the keys fansync knows, and no credentials.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";

const INFRA = join(import.meta.dirname, "..", "..", "infra");

test("the cron file runs fansync pull every minute as fansync, with no flock", async () => {
  const text = await readFile(join(INFRA, "cron", "fansync-pull.cron"), "utf8");
  const jobs = text.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#") && !/^[A-Z_]+=/.test(l));
  assert.equal(jobs.length, 1);
  const fields = (jobs[0] as string).split(/\s+/);
  assert.deepEqual(fields.slice(0, 6), ["*", "*", "*", "*", "*", "fansync"]);
  assert.deepEqual(fields.slice(6, 10), ["/usr/bin/fansync", "pull", "--config", "/etc/fansync/node.yaml"]);
  assert.doesNotMatch(jobs[0] as string, /flock/);
  // The comment must say why overlapping runs are safe.
  assert.match(text, /exits 75/);
  assert.match(text, /^PATH=/m);
});

// Keys per the configuration reference: common, push/watch, pull, replicate, per-location.
const COMMON = ["endpointUrl", "pathStyle", "profile", "logLevel", "logFormat", "stateDir", "concurrency"];
// The daemons' status page (watch, pull --watch, replicate --watch).
const HTTP = ["http", "healthMaxLag", "fleet"];
const KEYS: Record<string, string[]> = {
  "master.yaml": [...COMMON, "docroot", "target", "exclude", "excludeFrom", "include", "cacheControl", "multipartThreshold", "partSize", "maxDelete", "delay", "maxDelay", "rescanInterval", "replicateTo", ...HTTP],
  "node-us.yaml": [...COMMON, "sources", "docroot", "maxDelete", "statusFile", "interval", "staleAfter", "deleteExtraneous", "maxLag", "locations", "report", "reportTo", "nodeId", ...HTTP],
  "replicator.yaml": [...COMMON, "source", "targets", "watch", "interval", "locations", ...HTTP],
};

for (const [file, allowed] of Object.entries(KEYS)) {
  test(`${file} parses, uses only known keys and holds no credentials`, async () => {
    const text = await readFile(join(INFRA, "config", file), "utf8");
    const doc = parse(text) as Record<string, unknown>;
    assert.equal(typeof doc, "object");
    for (const key of Object.keys(doc)) assert.ok(allowed.includes(key), `${file}: unexpected key ${key}`);
    // Not even commented out: no key names or values that look like secrets.
    assert.doesNotMatch(text, /secret|accessKey|access_key|password|token|AKIA[0-9A-Z]{16}/i);
    assert.match(text, /No credentials in this file/);
  });
}

test("the node config reads its region first and falls back to the primary", async () => {
  const doc = parse(await readFile(join(INFRA, "config", "node-us.yaml"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(doc.sources, ["s3://fansync-us/site/", "s3://fansync-primary/site/"]);
  assert.equal(doc.docroot, "/var/www/html");
});

test("the master and replicator configs point at the primary", async () => {
  const master = parse(await readFile(join(INFRA, "config", "master.yaml"), "utf8")) as Record<string, unknown>;
  assert.equal(master.target, "s3://fansync-primary/site/");
  const replicator = parse(await readFile(join(INFRA, "config", "replicator.yaml"), "utf8")) as Record<string, unknown>;
  assert.equal(replicator.source, "s3://fansync-primary/site/");
  assert.deepEqual(replicator.targets, ["s3://fansync-us/site/", "s3://fansync-jp/site/", "s3://fansync-uk/site/"]);
  // The unit runs `fansync replicate --config …` only: the file makes it a daemon.
  assert.equal(replicator.watch, true);
});

test("the status files live in one documented place nginx can serve, outside every docroot (a sync node never publishes them), writable by the units and created by the .deb", async () => {
  const STATUS_DIR = "/var/www/fansync/";
  for (const file of ["node-us.yaml", "sync-app.yaml"]) {
    const doc = parse(await readFile(join(INFRA, "config", file), "utf8")) as Record<string, string>;
    const statusFile = doc.statusFile ?? "";
    assert.ok(statusFile.startsWith(STATUS_DIR), `${file}: statusFile ${statusFile} is under ${STATUS_DIR}`);
    assert.ok(!statusFile.startsWith(`${doc.docroot}/`), `${file}: not inside the docroot`);
  }
  for (const unit of ["fansync-pull.service", "fansync-sync.service"]) {
    const text = await readFile(join(INFRA, "systemd", unit), "utf8");
    assert.match(text, /^ReadWritePaths=.*-\/var\/www\/fansync(\s|$)/m, unit);
  }
  const postinst = await readFile(join(INFRA, "..", "release", "debian", "postinst"), "utf8");
  assert.match(postinst, /mkdir -p \/var\/www\/fansync/);
  assert.match(postinst, /chmod 0755 \/var\/www\/fansync/);
});
