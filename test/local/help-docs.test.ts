/**
 * fansync(1) and the shell completions come from the same commander definitions as --help: every
 * flag `fansync pull --help` lists is in the manual page and in both completions.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { FANSYNC_BIN } from "../helpers/cli.ts";

const cli = async (...args: string[]) => (await promisify(execFile)(process.execPath, [FANSYNC_BIN, ...args], { maxBuffer: 8 << 20 })).stdout;

/** The long flags a command's --help shows. */
async function helpFlags(command: string): Promise<string[]> {
  return [...new Set([...(await cli(command, "--help")).matchAll(/^\s+(?:-\w, )?(--[a-z][\w-]*)/gm)].map((m) => m[1] as string))].filter((f) => f !== "--help");
}

test("the manual page lists every command and every flag --help lists, in roff", async () => {
  const man = await cli("manpage");
  assert.match(man, /^\.TH FANSYNC 1 "\d{4}-\d{2}-\d{2}" "fansync \d+\.\d+\.\d+"/);
  for (const command of ["push", "watch", "pull", "sync", "replicate", "status", "doctor", "log", "rollback", "keygen", "version", "completion"]) {
    assert.match(man, new RegExp(`^\\.SS "fansync ${command} `, "m"), command);
  }
  for (const f of await helpFlags("pull")) assert.ok(man.includes(`.B ${f.replace(/-/g, "\\-")}`) || man.includes(`, ${f.replace(/-/g, "\\-")}`), `pull ${f} in the manual page`);
  const rendered = spawnSync("man", ["-l", "-"], { input: man, encoding: "utf8", env: { ...process.env, MANWIDTH: "100" } });
  if (rendered.status === 0) assert.match(rendered.stdout, /--chmod <rules>/);
});

test("bash and zsh completion: valid scripts offering each command's flags", async () => {
  const bash = await cli("completion", "bash");
  assert.equal(spawnSync("bash", ["-n"], { input: bash }).status, 0);
  const flags = await helpFlags("pull");
  const line = bash.split("\n").find((l) => l.trim().startsWith("pull)")) ?? "";
  for (const f of flags) assert.ok(line.includes(` ${f} `) || line.includes(`"${f} `), `bash: pull ${f}`);
  // What bash offers after `fansync pull --ch`.
  const offered = spawnSync("bash", ["-c", `${bash}\nCOMP_WORDS=(fansync pull --ch); COMP_CWORD=2; _fansync; echo "\${COMPREPLY[@]}"`], { encoding: "utf8" });
  assert.deepEqual(offered.stdout.trim().split(" ").sort(), ["--checksum", "--chmod"]);
  const zsh = await cli("completion", "zsh");
  assert.match(zsh, /^#compdef fansync$/m);
  for (const f of flags) assert.ok(zsh.includes(`'${f}[`), `zsh: pull ${f}`);
  const bad = spawnSync(process.execPath, [FANSYNC_BIN, "completion", "fish"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
});
