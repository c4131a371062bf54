/**
 * docs/examples/ansible-fansync-node.yml (issue 23): a playbook that installs the .deb, writes
 * node.yaml (which fansync's own config validation accepts for `pull`, every key used) and
 * fansync.env (0600), gives the docroot to nginx's group (setgid) and enables fansync-pull.timer.
 * `ansible-playbook --syntax-check` runs where ansible is installed (FANSYNC_ANSIBLE_PLAYBOOK names
 * a binary off PATH); elsewhere that test skips, saying so.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parse, stringify } from "yaml";
import { resolveConfig } from "../../src/cli/settings.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");
const EXAMPLE = path.join(ROOT, "docs", "examples", "ansible-fansync-node.yml");
const playbook = [process.env.FANSYNC_ANSIBLE_PLAYBOOK, "ansible-playbook"].find((b) => b && spawnSync(b, ["--version"]).status === 0);
const NO_ANSIBLE = "no ansible-playbook (pip install ansible-core, or set FANSYNC_ANSIBLE_PLAYBOOK): the syntax check is skipped; the structure test still runs";
if (!playbook) console.log(`# SKIP ansible-playbook --syntax-check: ${NO_ANSIBLE}`);

type Task = Record<string, unknown> & { name: string; when?: string };
type Play = { name: string; hosts: string; become: boolean; vars: { fansync_deb: string; fansync_web_group: string; fansync_node: Record<string, unknown>; fansync_env: Record<string, string> }; tasks: Task[] };

async function readPlay(): Promise<Play> {
  const doc = parse(await readFile(EXAMPLE, "utf8")) as Play[];
  assert.ok(Array.isArray(doc) && doc.length === 1, "one play");
  return doc[0] as Play;
}

/** The task using `module` whose arguments match `where` (exactly one). */
function task(play: Play, module: string, where: (args: Record<string, unknown>) => boolean = () => true): Record<string, unknown> {
  const found = play.tasks.filter((t) => module in t && where(t[module] as Record<string, unknown>));
  assert.equal(found.length, 1, `one ${module} task${found.length ? "" : " (none found)"}`);
  return (found[0] as Task)[module] as Record<string, unknown>;
}

test("the Ansible example: installs the .deb, writes node.yaml and fansync.env (0600), docroot group for nginx, enables the pull timer", async () => {
  const play = await readPlay();
  assert.equal(play.become, true, "root: it installs a package and writes /etc");
  for (const t of play.tasks) assert.ok(t.name, "every task is named");
  // The package: copied to the host, installed by apt from that path.
  const copied = task(play, "ansible.builtin.copy", (a) => a.src === "{{ fansync_deb }}");
  assert.equal(task(play, "ansible.builtin.apt").deb, copied.dest);
  assert.match(play.vars.fansync_deb, /^fansync_.*\.deb$/);
  // node.yaml: the vars' mapping, as YAML, where the pull unit reads it.
  const node = task(play, "ansible.builtin.copy", (a) => a.dest === "/etc/fansync/node.yaml");
  assert.equal(node.content, "{{ fansync_node | to_nice_yaml }}");
  const unit = await readFile(path.join(ROOT, "infra", "systemd", "fansync-pull.service"), "utf8");
  assert.match(unit, /^ExecStart=\/usr\/bin\/fansync pull --config \/etc\/fansync\/node\.yaml$/m);
  // fansync.env: root's, 0600, one KEY=value line per entry; the unit reads that file.
  const env = task(play, "ansible.builtin.copy", (a) => a.dest === "/etc/fansync/fansync.env");
  assert.deepEqual([env.owner, env.group, env.mode], ["root", "root", "0600"]);
  assert.match(String(env.content), /\{\{ key \}\}=\{\{ value \}\}/);
  assert.match(unit, /^EnvironmentFile=-\/etc\/fansync\/fansync\.env$/m);
  for (const k of Object.keys(play.vars.fansync_env)) assert.match(k, /^AWS_[A-Z_]+$/, "only the AWS chain's settings: never keys in the playbook's defaults");
  assert.ok(!Object.keys(play.vars.fansync_env).some((k) => /SECRET|ACCESS_KEY/.test(k)));
  // The docroot: fansync's, the web group's, setgid; the fansync user in that group (for `group:`).
  const docroot = task(play, "ansible.builtin.file", (a) => a.path === "{{ fansync_node.docroot }}");
  assert.deepEqual([docroot.state, docroot.owner, docroot.group, docroot.mode], ["directory", "fansync", "{{ fansync_web_group }}", "2775"]);
  const user = task(play, "ansible.builtin.user");
  assert.deepEqual([user.name, user.groups, user.append], ["fansync", "{{ fansync_web_group }}", true]);
  assert.equal(play.vars.fansync_node.group, play.vars.fansync_web_group, "node.yaml's group is the web group");
  // Another docroot gets the unit's ReadWritePaths drop-in (the unit allows only /var/www/html).
  const dropIn = play.tasks.find((t) => (t["ansible.builtin.copy"] as { dest?: string } | undefined)?.dest?.startsWith("/etc/systemd/system/fansync-pull.service.d/"));
  assert.match(String((dropIn?.["ansible.builtin.copy"] as { content?: string } | undefined)?.content), /ReadWritePaths=\{\{ fansync_node\.docroot \}\}/);
  assert.equal(dropIn?.when, 'fansync_node.docroot != "/var/www/html"');
  assert.match(unit, /^ReadWritePaths=-\/var\/www\/html /m);
  // The timer, enabled and started after a daemon-reload (the drop-in).
  const timer = task(play, "ansible.builtin.systemd");
  assert.deepEqual([timer.name, timer.enabled, timer.state, timer.daemon_reload], ["fansync-pull.timer", true, "started", true]);
  // The order a host needs: package before its user and /etc/fansync, the timer last.
  const order = play.tasks.map((t) => Object.keys(t).find((k) => k.startsWith("ansible.builtin.")));
  assert.ok(order.indexOf("ansible.builtin.apt") < order.indexOf("ansible.builtin.user"));
  assert.equal(order.at(-1), "ansible.builtin.systemd");
});

test("the node.yaml the Ansible example writes is a pull config fansync accepts, every key used", async () => {
  const play = await readPlay();
  const dir = await mkdtemp(path.join(tmpdir(), "fansync-ansible-"));
  try {
    const file = path.join(dir, "node.yaml");
    await writeFile(file, stringify(play.vars.fansync_node));
    const { cfg, unused } = await resolveConfig("pull", file, {});
    assert.deepEqual(unused, [], "no key pull ignores");
    assert.equal(cfg.docroot, "/var/www/html");
    assert.ok(cfg.chmod, "chmod: parsed (rsync's D2775,F664)");
    assert.equal(cfg.group, "www-data");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("ansible-playbook --syntax-check accepts the example", { skip: playbook ? false : NO_ANSIBLE }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "fansync-ansible-"));
  try {
    const inventory = path.join(dir, "inventory.ini");
    await writeFile(inventory, "[web]\nweb1 ansible_connection=local\n");
    const r = await promisify(execFile)(playbook as string, ["--syntax-check", "-i", inventory, EXAMPLE], { env: { ...process.env, ANSIBLE_LOCAL_TEMP: dir, ANSIBLE_HOME: dir } });
    assert.match(r.stdout, /playbook: .*ansible-fansync-node\.yml/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
