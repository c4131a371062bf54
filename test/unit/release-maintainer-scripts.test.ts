/**
 * The .deb's maintainer scripts as Debian packages write them (dh_installsystemd's snippets):
 * every unit handled, systemd driven through deb-systemd-helper / deb-systemd-invoke, operator
 * data kept on purge. Run for real with dpkg in test/release/deb-install.release.test.ts.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { PACKAGED_FILES } from "../../release/deb.ts";

const DIR = path.join(import.meta.dirname, "..", "..", "release", "debian");
const read = (f: string) => readFile(path.join(DIR, f), "utf8");
const UNITS = PACKAGED_FILES.filter((f) => /\.(service|timer)$/.test(f.to)).map((f) => path.basename(f.to));

test("prerm, postinst and postrm name every unit the package ships (fansync-sync.service too)", async () => {
  assert.ok(UNITS.includes("fansync-sync.service"));
  for (const script of ["prerm", "postinst", "postrm"]) {
    const text = await read(script);
    for (const u of UNITS) assert.match(text, new RegExp(u.replace(/\./g, "\\.")), `${script} names ${u}`);
  }
  // An upgrade restarts the daemons that run (the oneshot puller's next tick uses the new binary).
  assert.match(await read("postinst"), /deb-systemd-invoke try-restart \$DAEMONS/);
  assert.match(await read("postinst"), /^DAEMONS=".*fansync-sync\.service.*"$/m);
});

test("systemd through deb-systemd-helper / deb-systemd-invoke, not systemctl (lintian: maintainer-script-calls-systemctl)", async () => {
  for (const script of ["prerm", "postinst", "postrm"]) {
    const text = await read(script);
    const calls = text.split("\n").filter((l) => /\bsystemctl\b/.test(l) && !/^\s*#/.test(l));
    // Only daemon-reload, which debhelper's own snippets call systemctl for.
    assert.deepEqual(calls.filter((l) => !/systemctl --system daemon-reload/.test(l)), [], script);
  }
  assert.match(await read("prerm"), /deb-systemd-invoke stop \$UNITS/);
  assert.match(await read("postrm"), /deb-systemd-helper purge \$UNITS/);
  assert.match(await read("postrm"), /deb-systemd-helper mask \$UNITS/);
});

test("purge keeps operator data: /var/lib/fansync (credentials, kept conflict versions) and the status files stay, and the script says so", async () => {
  const postrm = await read("postrm");
  assert.doesNotMatch(postrm, /rm -rf \/var\/lib\/fansync/);
  assert.match(postrm, /kept \$d \(state/);
  assert.match(postrm, /for d in \/var\/lib\/fansync \/var\/www\/fansync/);
});

test("the maintainer scripts are valid POSIX sh", async () => {
  for (const script of ["prerm", "postinst", "postrm"]) await promisify(execFile)("sh", ["-n", path.join(DIR, script)]);
});
