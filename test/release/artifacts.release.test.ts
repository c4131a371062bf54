/**
 * What `npm run release` built, checked without running it (the arm64 files cannot run here): each
 * single executable is an ELF for its CPU with the application blob injected and the fuse flipped;
 * each .deb holds that executable and exactly the files it should, for its architecture; the bundle
 * has the lazily loaded modules and nothing of the demo's server; the manifest's sizes are the files'.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { test } from "node:test";
import { BINARY_PATH, GENERATED_FILES, PACKAGED_FILES } from "../../release/deb.ts";
import { PLATFORMS } from "../../release/platforms.ts";
import { checkSea } from "../../release/sea.ts";
import { loadRelease } from "../helpers/release.ts";

const run = promisify(execFile);
const rel = await loadRelease();
// The intermediates (bundle, blob) stay in the release cache; out/release holds only what is published.
const WORK = rel.manifest.workDir;

test("out/release holds the artifacts, manifest.json and SHA256SUMS, nothing else", async () => {
  const { readdir } = await import("node:fs/promises");
  assert.deepEqual((await readdir(rel.dir)).sort(), [...rel.manifest.artifacts.map((a) => a.file), "SHA256SUMS", "manifest.json"].sort());
});

for (const p of PLATFORMS) {
  test(`linux-${p.arch}: a single executable for its CPU, blob injected`, async () => {
    const c = await checkSea(rel.binary(p), path.join(WORK, "fansync.blob"), p);
    assert.deepEqual(c, { machine: p.elfMachine, machineOk: true, fuseFlipped: true, blobPresent: true });
    assert.equal((await stat(rel.binary(p))).mode & 0o111, 0o111, "executable");
  });

  test(`linux-${p.arch}: the .deb holds that executable and the package's files, nothing else`, async () => {
    const deb = rel.deb(p);
    const field = async (f: string) => (await run("dpkg-deb", ["-f", deb, f])).stdout.trim();
    assert.equal(await field("Package"), "fansync");
    assert.equal(await field("Version"), rel.version);
    assert.equal(await field("Architecture"), p.debArch);
    assert.match(await field("Depends"), /libc6 \(>= 2\.28\).*passwd/);
    const { stdout } = await run("dpkg-deb", ["--contents", deb], { maxBuffer: 16 << 20 });
    const files = stdout.split("\n").filter((l) => l.startsWith("-")).map((l) => (l.split(/\s+/).at(-1) as string).replace(/^\.\//, "")).sort();
    const expected = [BINARY_PATH, ...PACKAGED_FILES.map((f) => f.to), ...GENERATED_FILES, "usr/share/doc/fansync/copyright", "usr/share/doc/fansync/node-LICENSE"].sort();
    assert.deepEqual(files, expected);
    assert.match(stdout, /^-rwxr-xr-x root\/root .* \.\/usr\/bin\/fansync$/m);
    // The executable inside is the one built for this CPU, byte for byte.
    const inside = (await run("sh", ["-c", `dpkg-deb --fsys-tarfile '${deb}' | tar -xOf - ./${BINARY_PATH} | sha256sum`], { maxBuffer: 1 << 20 })).stdout.split(" ")[0];
    const built = createHash("sha256").update(await readFile(rel.binary(p))).digest("hex");
    assert.equal(inside, built);
    const control = (await run("dpkg-deb", ["--info", deb])).stdout;
    for (const script of ["postinst", "prerm", "postrm"]) assert.match(control, new RegExp(`\\d+ bytes,\\s+\\d+ lines\\s+\\*\\s+${script}\\s+#!/bin/sh`), `${script} is there and executable`);
    const conffiles = (await run("sh", ["-c", `dpkg-deb --ctrl-tarfile '${deb}' | tar -xOf - ./conffiles`])).stdout.split("\n").filter(Boolean);
    assert.deepEqual(conffiles, ["/etc/fansync/master.yaml", "/etc/fansync/replicator.yaml", "/etc/fansync/node.yaml", "/etc/fansync/sync.yaml", "/etc/fansync/fansync.env"]);
    // The units' environment file may hold a secret: root only.
    assert.match(stdout, /^-rw------- root\/root .* \.\/etc\/fansync\/fansync\.env$/m);
  });
}

test("the bundle carries pino-pretty and cli-progress, and nothing of the demo's S3 server", async () => {
  const bundle = await readFile(path.join(WORK, "fansync.cjs"), "utf8");
  for (const m of ["pino-pretty", "cli-progress", "@aws-sdk/client-s3", "chokidar"]) assert.ok(bundle.includes(`// node_modules/${m}/`), `${m} is bundled`);
  for (const m of ["fauxqs", "fastify", "@fastify"]) assert.ok(!bundle.includes(`// node_modules/${m}/`), `${m} is not bundled`);
  assert.ok(!bundle.includes("node_modules/fastify"), "no trace of fastify");
  // The version is fixed at build time: the executable has no package.json to read.
  assert.match(bundle, new RegExp(`FANSYNC_VERSION = "${rel.version.replace(/\./g, "\\.")}"`));
});

test("the manifest lists every artifact with its real size", async () => {
  assert.deepEqual(rel.manifest.artifacts.map((a) => a.kind).sort(), ["binary", "binary", "deb", "deb", "npm"]);
  for (const a of rel.manifest.artifacts) assert.equal((await stat(path.join(rel.dir, a.file))).size, a.bytes, a.file);
});

test("SHA256SUMS beside the artifacts checks every one of them (sha256sum -c)", async () => {
  const sums = await readFile(path.join(rel.dir, "SHA256SUMS"), "utf8");
  const names = sums.trim().split("\n").map((l) => l.split("  ")[1]).sort();
  assert.deepEqual(names, rel.manifest.artifacts.map((a) => a.file).sort());
  const { stdout } = await run("sha256sum", ["-c", "SHA256SUMS"], { cwd: rel.dir });
  assert.equal(stdout.trim().split("\n").filter((l) => l.endsWith(": OK")).length, names.length);
});
