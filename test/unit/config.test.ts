import assert from "node:assert/strict";
import { test } from "node:test";
import { checkCommand, commandsReading, validateConfig } from "../../src/core/config.ts";
import { ConfigError, UsageError } from "../../src/core/errors.ts";
import { parseLocation } from "../../src/core/location.ts";
import { parseDeleteLimit, parseDuration, parseSize } from "../../src/core/units.ts";

test("defaults are filled and the result is frozen", () => {
  const c = validateConfig({ docroot: "/srv/www", target: "s3://bucket/site" });
  assert.equal(c.concurrency, 16);
  assert.deepEqual(c.target, { bucket: "bucket", prefix: "site/" });
  assert.deepEqual(c.maxDelete, { kind: "percent", value: 50 });
  assert.equal(c.delay, 500);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.target));
});

test("every problem is reported at once, each with its key path", () => {
  try {
    validateConfig({ concurency: 4, concurrency: "lots", target: "http://x", partSize: "1MiB", maxDelete: "150%", locations: [{ url: "s3://ok-bucket/x", endpointUrl: "ftp://x", extra: 1 }], secretAccessKey: "x" });
    assert.fail("expected a ConfigError");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const text = err.problems.join("\n");
    assert.match(text, /concurency: unknown key \(did you mean "concurrency"\?\)/);
    assert.match(text, /concurrency: expected a non-negative integer/);
    assert.match(text, /target: not an s3 location/);
    assert.match(text, /partSize: S3 requires parts of at least 5 MiB/);
    assert.match(text, /maxDelete: expected a count/);
    assert.match(text, /locations\[0\]\.endpointUrl: expected an http/);
    assert.match(text, /locations\[0\]\.extra: unknown key/);
    assert.match(text, /secretAccessKey: credentials do not belong in a config file/);
    assert.equal(err.problems.length, 8);
  }
});

test("s3 locations parse like the aws cli writes them", () => {
  assert.deepEqual(parseLocation("s3://my-bucket"), { bucket: "my-bucket", prefix: "" });
  assert.deepEqual(parseLocation("s3://my-bucket/"), { bucket: "my-bucket", prefix: "" });
  assert.deepEqual(parseLocation("s3://my-bucket/a/b"), { bucket: "my-bucket", prefix: "a/b/" });
  assert.throws(() => parseLocation("my-bucket/a"), /not an s3 location/);
  assert.throws(() => parseLocation("s3://Bad_Bucket!/a"), /invalid bucket name/);
  assert.throws(() => parseLocation("s3://bucket/a/../b"), /invalid prefix/);
});

test("sizes, durations and delete limits", () => {
  assert.equal(parseSize("8MiB"), 8 * 1024 * 1024);
  assert.equal(parseSize("5mb"), 5_000_000);
  assert.equal(parseSize(123), 123);
  assert.equal(parseSize("lots"), undefined);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("2s"), 2000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("2 fortnights"), undefined);
  assert.deepEqual(parseDeleteLimit("25%"), { kind: "percent", value: 25 });
  assert.deepEqual(parseDeleteLimit("100"), { kind: "count", value: 100 });
  assert.equal(parseDeleteLimit("-1"), undefined);
});

test("each command has its own schema: required locations named with where they come from; keys of other commands reported, not refused", () => {
  const cfg = validateConfig({ docroot: "/srv/www", target: "s3://bucket/site", delay: "1s", sources: "s3://bucket-b/x" });
  assert.throws(() => checkCommand(validateConfig({ docroot: "/srv/www" }), "push", []), (e: unknown) =>
    e instanceof UsageError && /^no target location given \(an argument, or `target` in the config file\)$/.test(e.message) && e.hint === "fansync push <docroot> s3://bucket/prefix");
  assert.throws(() => checkCommand(validateConfig({ sources: ["s3://bucket-b/x"] }), "pull", []), /no docroot given/);
  assert.throws(() => checkCommand(validateConfig({}), "replicate", []), /no primary location given/);
  assert.throws(() => checkCommand(validateConfig({ source: "s3://bucket-p/x" }), "replicate", []), /no region location given/);
  const { unused } = checkCommand(cfg, "push", ["docroot", "target", "delay", "sources"]);
  assert.deepEqual(unused, ["delay", "sources"]);
  assert.deepEqual(commandsReading("delay"), ["watch", "sync"]);
  assert.deepEqual(checkCommand(cfg, "watch", ["docroot", "target", "delay"]).unused, []);
});

test("sync reads events: and onApply: from the config file, and with events polls once a minute unless told", () => {
  const raw = { docroot: "/srv/www", target: "s3://bucket/site", events: "https://sqs.eu-west-1.amazonaws.com/123456789012/fansync-web1", onApply: "systemctl reload nginx" };
  const { cfg, unused } = checkCommand(validateConfig(raw), "sync", Object.keys(raw));
  assert.deepEqual(unused, [], "events and onApply are sync settings");
  assert.equal(cfg.events, raw.events);
  assert.equal(cfg.onApply, "systemctl reload nginx");
  assert.equal(cfg.interval, 60_000);
  assert.equal(checkCommand(validateConfig({ ...raw, interval: "10m" }), "sync", []).cfg.interval, 600_000);
  assert.equal(checkCommand(validateConfig({ docroot: "/srv/www", target: "s3://bucket/site" }), "sync", []).cfg.interval, 2000);
  assert.throws(() => validateConfig({ ...raw, events: "not a url" }), /events/);
});

test("sync: --owns, --conflict and --conflicts-dir are checked and defaulted", () => {
  const cfg = checkCommand(validateConfig({ docroot: "/srv/www", target: "s3://bucket/site", owns: "uploads/**" }), "sync", []).cfg;
  assert.deepEqual(cfg.owns, ["uploads/**"]);
  assert.equal(cfg.conflict, "newer");
  assert.equal(cfg.conflictsDir, undefined);
  assert.throws(() => validateConfig({ conflict: "mine" }), /conflict: expected one of newer, remote, local, got "mine"/);
  assert.throws(() => checkCommand(validateConfig({ docroot: "/srv/www" }), "sync", []), /no target location given/);
});
