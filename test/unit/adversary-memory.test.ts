/**
 * A bucket writer without the key against signed two-way (`sync`) nodes, on MemoryStore (found by
 * the simulation: `npm run sim -- --seed S --actors sync,puller,adversary --no-quirks --no-flips`,
 * seeds 3 17 81 107 160). The rule (docs/guarantees.md): a node with a trusted key never installs
 * unsigned bytes, and is never stuck without saying why. An object written over is uploaded again
 * by the node that holds its verified bytes (`sync --verify`); an old head put back is refused and
 * reported, and nothing is published or applied over it.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { currentOf, MemoryStore, MemoryWorld } from "../../src/adapters/memory-store.ts";
import { IntegrityError } from "../../src/core/errors.ts";
import { generateSigningKeyPair, parsePrivateKey, parsePublicKey, type SigningKey, type TrustPolicy } from "../../src/core/signing.ts";
import { makeTwoWay, makeUploader, pullOnceWith } from "../../sim/world.ts";
import { readTree, tmp, writeTree } from "../helpers/memory-world.ts";

const pair = generateSigningKeyPair();
const signer = { key: parsePrivateKey(pair.privatePem) as SigningKey, site: "site" };
const publicKey = parsePublicKey(pair.publicText);
assert.ok(publicKey);
const trust: TrustPolicy = { keys: [publicKey], site: "site" };
const URL = "s3://primary/shared/";
const LOC = { bucket: "primary", prefix: "shared/" };

let clock = Date.now() / 1000 - 1000;
/** Write `files` under `dir`, each with a later mtime than the last write (rounds see a change). */
function write(dir: string, files: Record<string, string>): void {
  writeTree(dir, files, (clock += 10));
}

function setup() {
  const world = new MemoryWorld();
  world.bucket("primary", "off");
  const store = new MemoryStore({ world, bucket: "primary" });
  const root = tmp("fansync-adv-");
  const node = (id: string, verify = false) => makeTwoWay(store, { docroot: path.join(root, id), url: URL, base: path.join(root, `${id}-state`), nodeId: id, signer, trust, verify });
  const headBody = () => currentOf(world.buckets.get("primary")!, "shared/.fansync/head.json")?.body;
  return { world, store, root, node, headBody };
}

test("sync --verify: an object of the node's own generation written over by someone without the key is uploaded again from its docroot, and the other node then converges", async () => {
  const { world, store, root, node } = setup();
  const a = node("a");
  write(path.join(root, "a"), { "index.html": "mine" });
  await a.node.round({ joining: true });
  // Written over, behind the manifest's back: every reader refuses it.
  await store.put("shared/index.html", Buffer.from("<script>evil</script>"), { contentType: "text/html" });
  const b = node("b");
  await assert.rejects(b.node.round({ joining: true }), /changed or are not there yet/);
  assert.deepEqual(readTree(path.join(root, "b")), {}, "nothing unsigned is installed");
  // The node that holds the verified bytes starts with --verify: it uploads them again.
  await node("a", true).node.round({ joining: true });
  assert.equal(currentOf(world.buckets.get("primary")!, "shared/index.html")?.body.toString(), "mine");
  await b.node.round({ joining: true });
  assert.deepEqual(readTree(path.join(root, "b")), { "index.html": "mine" });
  await pullOnceWith({ loc: LOC, store }, { docroot: path.join(root, "p"), base: path.join(root, "p-state"), trust });
  assert.deepEqual(readTree(path.join(root, "p")), { "index.html": "mine" });
});

test("an old head put back: a sync node refuses it and says so (its docroot keeps its generation), and a writer publishes nothing over it", async () => {
  const { store, root, node, headBody } = setup();
  const a = node("a");
  write(path.join(root, "a"), { "index.html": "one" });
  await a.node.round({ joining: true });
  const old = headBody();
  assert.ok(old);
  write(path.join(root, "a"), { "index.html": "two" });
  await a.node.round({ joining: false });
  // The replay: generation 1's (genuinely signed) head is written back.
  await store.put("shared/.fansync/head.json", old, { contentType: "application/json" });
  write(path.join(root, "a"), { "index.html": "three" });
  await assert.rejects(a.node.round({ joining: false }), (err: unknown) => err instanceof IntegrityError && /went backwards/.test(err.message));
  assert.deepEqual(headBody(), old, "nothing was published over the old head");
  assert.deepEqual(readTree(path.join(root, "a")), { "index.html": "three" }, "the node's own edit stays");
});

test("an old head put back: push refuses to publish over it (generation 2 is used already), and says so", async () => {
  const { world, store, root } = setup();
  const master = path.join(root, "m");
  const head = () => currentOf(world.buckets.get("primary")!, "site/.fansync/head.json")?.body;
  const up = makeUploader(store, { docroot: master, url: "s3://primary/site/", base: path.join(root, "m-state"), signer, tuning: { force: false } });
  write(master, { "index.html": "one" });
  await up.reconcile();
  const old = head();
  assert.ok(old);
  write(master, { "index.html": "two" });
  await up.reconcile();
  await up.releaseLease();
  await store.put("site/.fansync/head.json", old, { contentType: "application/json" });
  write(master, { "index.html": "three" });
  await assert.rejects(up.reconcile(), (err: unknown) => err instanceof IntegrityError && /went backwards: generation 1, this writer already published or read generation 2/.test(err.message));
  await up.releaseLease();
  assert.deepEqual(head(), old, "nothing was published over the old head");
});

test("a conflict whose losing remote version was written over by someone without the key does not wedge the node: its own version is published", async () => {
  const { world, store, root, node } = setup();
  const a = node("a");
  const b = node("b");
  write(path.join(root, "a"), { "b.txt": "base" });
  await a.node.round({ joining: true });
  await b.node.round({ joining: true });
  write(path.join(root, "a"), { "b.txt": "from a" });
  await a.node.round({ joining: false });
  await store.put("shared/b.txt", Buffer.from("garbage"), { contentType: "text/plain" });
  // b edits the same file later: b's version wins, a's (the remote one) would be kept, but its bytes are gone.
  write(path.join(root, "b"), { "b.txt": "from b" });
  const r = await b.node.round({ joining: false });
  assert.equal(r.published, true);
  assert.equal(currentOf(world.buckets.get("primary")!, "shared/b.txt")?.body.toString(), "from b");
  await a.node.round({ joining: false });
  assert.deepEqual(readTree(path.join(root, "a")), { "b.txt": "from b" });
});

test("an old head put back, then a node that never saw the newer generation publishes that number again: a node that applied the real one refuses it, says why, and publishes nothing over it", async () => {
  const { store, root, node, headBody } = setup();
  const a = node("a");
  const b = node("b");
  const c = node("c");
  write(path.join(root, "a"), { "index.html": "one" });
  await a.node.round({ joining: true });
  await c.node.round({ joining: true });
  const old = headBody();
  assert.ok(old);
  write(path.join(root, "a"), { "index.html": "two" });
  await a.node.round({ joining: false });
  await b.node.round({ joining: true });
  assert.deepEqual(readTree(path.join(root, "b")), { "index.html": "two" });
  // The replay; c, which never saw generation 2, publishes its own generation 2 over it.
  await store.put("shared/.fansync/head.json", old, { contentType: "application/json" });
  write(path.join(root, "c"), { "c.html": "from c" });
  await c.node.round({ joining: false });
  const forked = headBody();
  write(path.join(root, "b"), { "b.html": "from b" });
  await assert.rejects(b.node.round({ joining: false }), /generation 2 with other content than the generation 2 this node applied/);
  assert.deepEqual(headBody(), forked, "b published nothing over it");
  assert.deepEqual(readTree(path.join(root, "b")), { "index.html": "two", "b.html": "from b" }, "b keeps what it has");
});

test("sync --verify on a node that has no base yet (a fresh state directory) repairs from the head's verified generation what its docroot holds; without --verify it says the objects were written over", async () => {
  const { world, store, root, node } = setup();
  const a = node("a");
  write(path.join(root, "a"), { "index.html": "mine", "other.html": "other" });
  await a.node.round({ joining: true });
  await store.put("shared/index.html", Buffer.from("garbage"), { contentType: "text/html" });
  const fresh = (verify: boolean) => makeTwoWay(store, { docroot: path.join(root, "a"), url: URL, base: path.join(root, "fresh-state"), nodeId: "a", signer, trust, verify });
  await assert.rejects(fresh(false).node.round({ joining: true }), (err: unknown) => err instanceof IntegrityError && /written over outside fansync/.test(err.message));
  await fresh(true).node.round({ joining: true });
  assert.equal(currentOf(world.buckets.get("primary")!, "shared/index.html")?.body.toString(), "mine");
  await pullOnceWith({ loc: LOC, store }, { docroot: path.join(root, "p"), base: path.join(root, "p-state"), trust });
  assert.deepEqual(readTree(path.join(root, "p")), { "index.html": "mine", "other.html": "other" });
});
