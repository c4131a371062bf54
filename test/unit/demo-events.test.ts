import assert from "node:assert/strict";
import { test } from "node:test";
import { formatWoken, headWrite, startDemoEvents } from "../../src/demo/events.ts";

test("the demo's relay publishes a head write to its bucket's topic, in S3's record shape, and nothing else", () => {
  const published: { topic: string; message: string }[] = [];
  const subscribed: string[] = [];
  const server = {
    createQueue: (name: string) => ({ queueUrl: `http://q/${name}` }),
    createTopic: (name: string) => ({ topicArn: `arn:${name}` }),
    subscribe: (o: { topic: string; queue: string }) => subscribed.push(`${o.topic} → ${o.queue}`),
    publish: (topic: string, message: string) => published.push({ topic, message }),
  };
  const ev = startDemoEvents(server, ["fansync-demo-primary", "fansync-demo-us"]);
  assert.equal(ev.queueFor("web-us", "fansync-demo-us"), "http://q/fansync-demo-web-us");
  assert.deepEqual(subscribed, ["fansync-demo-head-fansync-demo-us → fansync-demo-web-us"]);
  ev.relay("/fansync-demo-us/site/.fansync/head.json?x-id=PutObject");
  ev.relay("/fansync-demo-us/site/index.html");
  ev.relay("/fansync-demo-us/site/.fansync/manifests/3");
  ev.relay("/other-bucket/site/.fansync/head.json");
  assert.equal(ev.relayed, 1);
  assert.equal(published.length, 1);
  assert.equal(published[0]?.topic, "fansync-demo-head-fansync-demo-us");
  const record = (JSON.parse(published[0]?.message ?? "{}") as { Records: { eventName: string; s3: { bucket: { name: string }; object: { key: string } } }[] }).Records[0];
  assert.equal(record?.eventName, "ObjectCreated:Put");
  assert.equal(record?.s3.bucket.name, "fansync-demo-us");
  assert.equal(record?.s3.object.key, "site/.fansync/head.json");
  assert.throws(() => ev.queueFor("x", "no-such-bucket"), /no topic for bucket no-such-bucket/);
});

test("headWrite: only a location's head, path style, decoded", () => {
  assert.deepEqual(headWrite("/b/.fansync/head.json"), { bucket: "b", key: ".fansync/head.json" });
  assert.deepEqual(headWrite("/b/a%20b/.fansync/head.json"), { bucket: "b", key: "a b/.fansync/head.json" });
  assert.equal(headWrite("/b/x.fansync/head.json"), undefined);
  assert.equal(headWrite("/b"), undefined);
  assert.equal(headWrite("/b/%E0%A4%A/.fansync/head.json"), undefined);
});

test("formatWoken names the nodes events woke and says the relay stood in for S3", () => {
  const lines = formatWoken([{ node: "web-jp", messages: 3, state: "listening" }, { node: "web-uk", messages: undefined, state: undefined }], 9, "10m");
  assert.match(lines[0] ?? "", /^Events: 1 of 2 web node processes woken by events \(web-jp\); their poll interval is 10m/);
  assert.equal(lines[1], "  web-jp: 3 message(s), queue listening");
  assert.equal(lines[2], "  web-uk: 0 message(s), queue not used");
  assert.match(lines[3] ?? "", /the relay published 9 head write\(s\).*standing in for S3's ObjectCreated notification/);
});
