// The systemd units pass `systemd-analyze verify` (strict: no diagnostics at all) and carry the
// promised hardening. verify runs with --root on a temp tree holding the units, Debian's system
// units and a stub /usr/bin/fansync, so it checks the real files, ExecStart path included.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { access, chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parseUnit, unitValue } from "../helpers/unit-file.ts";

const UNIT_DIR = join(import.meta.dirname, "..", "..", "infra", "systemd");
const UNITS = ["fansync-watch.service", "fansync-replicate.service", "fansync-pull.service", "fansync-pull.timer", "fansync-sync.service"];
const ANALYZE = "/usr/bin/systemd-analyze";
const SYSTEM_UNITS = ["/usr/lib/systemd/system", "/lib/systemd/system"];

const analyzeMissing = await access(ANALYZE).then(() => undefined, () => `${ANALYZE} not found (install Debian's systemd package)`);
const systemUnits = await Promise.any(SYSTEM_UNITS.map(async (d) => (await access(join(d, "sysinit.target")), d))).catch(() => undefined);
const skip = analyzeMissing ?? (systemUnits ? undefined : `no system units (sysinit.target) in ${SYSTEM_UNITS.join(" or ")}`);
// Never skip silently: say why on the console and in the test report.
if (skip) console.log(`# SKIP systemd-analyze tests: ${skip}`);

type Verdict = { code: number; output: string };

let root: string | undefined;
after(() => (root ? rm(root, { recursive: true, force: true }) : undefined));

/** A fresh root with system units and a stub fansync binary; units are copied in per call. */
async function makeRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "fansync-systemd-"));
  await mkdir(join(dir, "etc/systemd/system"), { recursive: true });
  await mkdir(join(dir, "usr/lib/systemd"), { recursive: true });
  // Debian's targets (sysinit.target, network-online.target, ...) the units' default dependencies need.
  await cp(systemUnits as string, join(dir, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
  await mkdir(join(dir, "usr/bin"), { recursive: true });
  await writeFile(join(dir, "usr/bin/fansync"), "#!/bin/sh\nexit 0\n");
  await chmod(join(dir, "usr/bin/fansync"), 0o755);
  // ExecReload's shell (its own kill builtin sends the signal).
  await mkdir(join(dir, "bin"), { recursive: true });
  await writeFile(join(dir, "bin/sh"), "#!/bin/dash\nexit 0\n");
  await chmod(join(dir, "bin/sh"), 0o755);
  return dir;
}

/**
 * Run verify on a unit inside `dir`. systemd-analyze exits 0 on many mistakes (an unknown key or a
 * bad value is "ignoring" to systemd), so any diagnostic output counts as a failure too.
 */
function verify(dir: string, unit: string): Promise<Verdict> {
  return new Promise((resolve) => {
    execFile(ANALYZE, ["verify", "--man=no", `--root=${dir}`, `/etc/systemd/system/${unit}`], (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

const clean = (v: Verdict) => v.code === 0 && v.output === "";

describe("systemd-analyze verify", { skip }, () => {
  test("every fansync unit verifies without a single diagnostic", async () => {
    root = await makeRoot();
    for (const u of UNITS) await cp(join(UNIT_DIR, u), join(root, "etc/systemd/system", u));
    for (const u of UNITS) {
      const v = await verify(root, u);
      assert.ok(clean(v), `${u}: exit ${v.code}\n${v.output}`);
    }
  });

  test("the check catches real mistakes: typo'd key, bad value, missing binary, bad schedule", async () => {
    const broken = await makeRoot();
    try {
      const unitDir = join(broken, "etc/systemd/system");
      const watch = await readFile(join(UNIT_DIR, "fansync-watch.service"), "utf8");
      const cases: [string, string][] = [
        ["typo-key.service", watch.replace("ProtectSystem=strict", "ProtectSytem=strict")],
        ["bad-value.service", watch.replace("Restart=on-failure", "Restart=sometimes")],
        ["bad-binary.service", watch.replace("/usr/bin/fansync", "/usr/bin/fansnyc")],
        ["bad-schedule.timer", (await readFile(join(UNIT_DIR, "fansync-pull.timer"), "utf8")).replace("OnCalendar=*-*-* *:*:00", "OnCalendar=every minute")],
      ];
      for (const [name, text] of cases) {
        assert.notEqual(text, watch, `${name}: the mutation did not apply`);
        await writeFile(join(unitDir, name), text);
        const v = await verify(broken, name);
        assert.ok(!clean(v), `${name} should fail verification`);
      }
      // And the unmodified unit passes in the same root, so the failures are the mutations'.
      await writeFile(join(unitDir, "fansync-watch.service"), watch);
      assert.ok(clean(await verify(broken, "fansync-watch.service")));
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });
});

async function unit(name: string): Promise<(section: string, key: string) => string | undefined> {
  const parsed = parseUnit(await readFile(join(UNIT_DIR, name), "utf8"));
  return (section, key) => unitValue(parsed, section, key);
}

describe("unit contents", () => {
  const services: [string, string, string][] = [
    // Only `--config`: the role's file holds the locations (and the replicator's watch: true).
    ["fansync-watch.service", "/usr/bin/fansync watch --config /etc/fansync/master.yaml", "/var/lib/fansync"],
    ["fansync-replicate.service", "/usr/bin/fansync replicate --config /etc/fansync/replicator.yaml", "/var/lib/fansync"],
    ["fansync-pull.service", "/usr/bin/fansync pull --config /etc/fansync/node.yaml", "-/var/www/html /var/lib/fansync -/var/www/fansync"],
    // A two-way node applies remote changes to its docroot.
    ["fansync-sync.service", "/usr/bin/fansync sync --config /etc/fansync/sync.yaml", "-/var/www/html /var/lib/fansync -/var/www/fansync"],
  ];
  for (const [name, exec, writable] of services) {
    test(`${name} runs the right command as user fansync, hardened`, async () => {
      const get = await unit(name);
      assert.equal(get("Service", "ExecStart"), exec);
      assert.equal(get("Service", "User"), "fansync");
      assert.equal(get("Service", "Group"), "fansync");
      assert.equal(get("Service", "ProtectSystem"), "strict");
      assert.equal(get("Service", "ReadWritePaths"), writable);
      assert.equal(get("Service", "StateDirectory"), "fansync");
      assert.equal(get("Service", "NoNewPrivileges"), "yes");
      assert.equal(get("Service", "PrivateTmp"), "yes");
      assert.equal(get("Service", "ProtectHome"), "yes");
      assert.equal(get("Service", "KillSignal"), "SIGTERM");
      assert.match(get("Service", "TimeoutStopSec") ?? "", /^\d+s$/);
      assert.equal(get("Service", "CapabilityBoundingSet"), "");
    });
  }

  test("the daemons restart on failure; the puller is a oneshot where 75 (lock held) is success", async () => {
    for (const name of ["fansync-watch.service", "fansync-replicate.service", "fansync-sync.service"]) {
      const get = await unit(name);
      assert.equal(get("Service", "Type"), "simple");
      assert.equal(get("Service", "Restart"), "on-failure");
      assert.equal(get("Install", "WantedBy"), "multi-user.target");
    }
    const pull = await unit("fansync-pull.service");
    assert.equal(pull("Service", "Type"), "oneshot");
    assert.equal(pull("Service", "Restart"), undefined);
    assert.equal(pull("Service", "SuccessExitStatus"), "75");
    assert.equal(pull("Install", "WantedBy"), undefined, "started by the timer, not at boot");
  });

  test("the timer starts the puller every minute", async () => {
    const get = await unit("fansync-pull.timer");
    // verify does not check that a timer's Unit= exists, so this test does.
    assert.equal(get("Timer", "OnCalendar"), "*-*-* *:*:00");
    assert.equal(get("Timer", "Unit"), "fansync-pull.service");
    assert.equal(get("Install", "WantedBy"), "timers.target");
  });
});

test("the daemons reload on SIGHUP (systemctl reload) and the logrotate snippet the .deb ships sends it after rotating", async () => {
  for (const name of ["fansync-watch.service", "fansync-replicate.service", "fansync-sync.service"]) {
    const get = await unit(name);
    // The shell's kill builtin: a minimal Debian install may have no /bin/kill (procps).
    assert.equal(get("Service", "ExecReload"), `/bin/sh -c 'kill -HUP "$MAINPID"'`, name);
    // A configuration that can never run exits 3: restarting it every few seconds helps nobody.
    assert.equal(get("Service", "RestartPreventExitStatus"), "2 3", name);
  }
  const snippet = await readFile(join(UNIT_DIR, "..", "logrotate", "fansync"), "utf8");
  assert.match(snippet, /^\/var\/log\/fansync\/\*\.log \{$/m);
  assert.match(snippet, /postrotate\n\s+pkill -HUP -u fansync -x fansync/);
  const deb = await readFile(join(UNIT_DIR, "..", "..", "release", "deb.ts"), "utf8");
  assert.match(deb, /from: "infra\/logrotate\/fansync", to: "usr\/share\/fansync\/fansync\.logrotate"/);
});
