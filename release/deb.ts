/**
 * The Debian package: the single executable, the systemd units and timer, example configs under
 * /etc/fansync (conffiles), the cron line as an example, and maintainer scripts that create the
 * fansync user and /var/lib/fansync. Built with dpkg-deb from a staging tree: no network.
 */
import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { promisify } from "node:util";
import type { Platform } from "./platforms.ts";

const run = promisify(execFile);

/** One file of the package: where it comes from in the repository and where it is installed. */
export interface PackagedFile {
  readonly from: string;
  readonly to: string;
  readonly mode: number;
  /** An operator edits it: dpkg keeps their version on upgrade (DEBIAN/conffiles). */
  readonly conffile?: boolean;
}

/** Everything but the binary, the copyright file and the maintainer scripts. */
export const PACKAGED_FILES: readonly PackagedFile[] = [
  // /usr/lib/systemd/system, not /etc: the package's units; an operator's overrides go in /etc.
  { from: "infra/systemd/fansync-watch.service", to: "usr/lib/systemd/system/fansync-watch.service", mode: 0o644 },
  { from: "infra/systemd/fansync-replicate.service", to: "usr/lib/systemd/system/fansync-replicate.service", mode: 0o644 },
  { from: "infra/systemd/fansync-pull.service", to: "usr/lib/systemd/system/fansync-pull.service", mode: 0o644 },
  { from: "infra/systemd/fansync-pull.timer", to: "usr/lib/systemd/system/fansync-pull.timer", mode: 0o644 },
  { from: "infra/systemd/fansync-sync.service", to: "usr/lib/systemd/system/fansync-sync.service", mode: 0o644 },
  { from: "infra/config/master.yaml", to: "etc/fansync/master.yaml", mode: 0o644, conffile: true },
  { from: "infra/config/replicator.yaml", to: "etc/fansync/replicator.yaml", mode: 0o644, conffile: true },
  { from: "infra/config/node-us.yaml", to: "etc/fansync/node.yaml", mode: 0o644, conffile: true },
  { from: "infra/config/sync-app.yaml", to: "etc/fansync/sync.yaml", mode: 0o644, conffile: true },
  // The units' EnvironmentFile: AWS_REGION, AWS_PROFILE; root only, it may hold a secret.
  { from: "infra/config/fansync.env", to: "etc/fansync/fansync.env", mode: 0o600, conffile: true },
  // Not in /etc/cron.d: it would run on every host, the master too. Not under /usr/share/doc,
  // which minimal images drop (dpkg path-exclude). README: copy it to /etc/cron.d/fansync-pull.
  { from: "infra/cron/fansync-pull.cron", to: "usr/share/fansync/fansync-pull.cron", mode: 0o644 },
  { from: "infra/logrotate/fansync", to: "usr/share/fansync/fansync.logrotate", mode: 0o644 },
  // Each override says why (lintian: no error; the warnings that cannot be fixed are explained).
  { from: "release/debian/lintian-overrides", to: "usr/share/lintian/overrides/fansync", mode: 0o644 },
];

/** What `fansync manpage` and `fansync completion` print, written into the package. */
export interface GeneratedDocs {
  readonly manpage: string;
  readonly bash: string;
  readonly zsh: string;
}

/** Files the build generates into the package (beside PACKAGED_FILES, the binary and the copyright files). */
export const GENERATED_FILES: readonly string[] = [
  "usr/share/man/man1/fansync.1.gz",
  "usr/share/bash-completion/completions/fansync",
  "usr/share/zsh/vendor-completions/_fansync",
  "usr/share/doc/fansync/changelog.gz",
  "usr/share/doc/fansync/README.md.gz",
  "usr/share/doc/fansync/examples/master.yaml",
  "usr/share/doc/fansync/examples/replicator.yaml",
  "usr/share/doc/fansync/examples/node.yaml",
  "usr/share/doc/fansync/examples/sync.yaml",
];

/** A native package's changelog (usr/share/doc/fansync/changelog.gz), one entry for this version. */
export function debChangelog(version: string, date: Date): string {
  return `fansync (${version}) unstable; urgency=medium\n\n  * Release ${version} (see /usr/share/doc/fansync/README.md.gz).\n\n -- fansync developers <maintainers@fansync.invalid>  ${date.toUTCString().replace(/GMT$/, "+0000")}\n`;
}

/** The installed path of the executable (the units' ExecStart). */
export const BINARY_PATH = "usr/bin/fansync";

const MAINTAINER_SCRIPTS = ["postinst", "prerm", "postrm"] as const;

/** DEBIAN/control for one architecture. */
export function debControl(o: { version: string; debArch: string; installedSizeKiB: number }): string {
  return [
    "Package: fansync",
    `Version: ${o.version}`,
    `Architecture: ${o.debArch}`,
    "Maintainer: fansync developers <maintainers@fansync.invalid>",
    `Installed-Size: ${o.installedSizeKiB}`,
    // The official node binary links glibc >= 2.28, libstdc++ (GLIBCXX_3.4.21, GCC 5) and libgcc_s;
    // the maintainer scripts use groupadd/useradd (passwd).
    "Depends: libc6 (>= 2.28), libgcc-s1, libstdc++6 (>= 5), passwd",
    "Section: net",
    "Priority: optional",
    "Description: keep web docroots in sync through S3-compatible object storage",
    " fansync publishes a master's docroot to a bucket as numbered generations",
    " (objects, then a manifest, then head.json with a conditional write), fans",
    " them out to regional buckets, and lets every web node pull the newest one",
    " into place with verified, renamed temp files.",
    " .",
    " This package holds a single executable that carries its own Node.js",
    " runtime, the systemd units and timer, example configurations in",
    " /etc/fansync, and a fansync system user. No unit is enabled on install.",
    "",
  ].join("\n");
}

/** Debian's machine-readable copyright file: fansync, the Node.js runtime, and the bundled packages. */
export function debCopyright(bundled: readonly { name: string; version: string; license: string }[]): string {
  const lines = [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    "Upstream-Name: fansync",
    "",
    "Files: *",
    "Copyright: 2026 fansync developers",
    "License: MIT",
    "",
    "Files: usr/bin/fansync",
    "Copyright: Node.js contributors and the authors of the npm packages listed below",
    "License: MIT and others",
    " The executable is the official Node.js binary (its licence, with those of the",
    " libraries Node.js bundles, is in /usr/share/doc/fansync/node-LICENSE) with",
    " fansync and these npm packages bundled into it (name, version, licence):",
    ...bundled.map((b) => ` ${b.name} ${b.version} ${b.license}`),
    "",
    "License: MIT",
    " Permission is hereby granted, free of charge, to any person obtaining a copy",
    " of this software and associated documentation files (the \"Software\"), to deal",
    " in the Software without restriction, including without limitation the rights",
    " to use, copy, modify, merge, publish, distribute, sublicense, and/or sell",
    " copies of the Software, and to permit persons to whom the Software is",
    " furnished to do so, subject to the following conditions:",
    " .",
    " The above copyright notice and this permission notice shall be included in",
    " all copies or substantial portions of the Software.",
    " .",
    " THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR",
    " IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,",
    " FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.",
    "",
  ];
  return lines.join("\n");
}

/**
 * The xz level of the .debs. Measured on the amd64 package's payload (the 131 MB executable;
 * docs/testing.md, the release build): dpkg-deb's default -6 took 68 s of CPU for 30.6 MB, -3 43 s
 * for 34.1 MB, -2 23 s for 34.9 MB, -1 13 s for 36.1 MB: -2 saves 45 s per package for 14% more
 * bytes to download, the knee of the curve (still xz, which every dpkg reads).
 */
export const DEB_XZ_LEVEL = 2;

/** dpkg-deb's compressor and level: xz at DEB_XZ_LEVEL, or the type FANSYNC_DEB_COMPRESSION names (gzip, zstd, none) at its default level. */
export function debCompression(): { type: string; level?: number; label: string } {
  const type = process.env.FANSYNC_DEB_COMPRESSION ?? "xz";
  return type === "xz" ? { type, level: DEB_XZ_LEVEL, label: `xz -${DEB_XZ_LEVEL}` } : { type, label: type };
}

/** Build `out` (a .deb) for `p` from the repository at `root`, the executable and the Node licence. */
export async function buildDeb(o: {
  root: string; version: string; platform: Platform; binary: string; nodeLicense: string;
  bundled: readonly { name: string; version: string; license: string }[]; staging: string; out: string;
  docs: GeneratedDocs; buildDate: Date;
}): Promise<void> {
  const s = o.staging;
  await rm(s, { recursive: true, force: true });
  const put = async (from: string, to: string, mode: number) => {
    await mkdir(path.dirname(path.join(s, to)), { recursive: true });
    await copyFile(from, path.join(s, to));
    await chmod(path.join(s, to), mode);
  };
  await put(o.binary, BINARY_PATH, 0o755);
  for (const f of PACKAGED_FILES) await put(path.join(o.root, f.from), f.to, f.mode);
  await put(o.nodeLicense, "usr/share/doc/fansync/node-LICENSE", 0o644);
  await writeFile(path.join(s, "usr/share/doc/fansync/copyright"), debCopyright(o.bundled), { mode: 0o644 });
  // gzip -9n as dh_compress does (zlib writes no name and a zero time: the same bytes every build).
  const gz = async (to: string, text: string | Buffer) => {
    await mkdir(path.dirname(path.join(s, to)), { recursive: true });
    await writeFile(path.join(s, to), gzipSync(text, { level: 9 }), { mode: 0o644 });
  };
  const text = async (to: string, body: string) => {
    await mkdir(path.dirname(path.join(s, to)), { recursive: true });
    await writeFile(path.join(s, to), body, { mode: 0o644 });
  };
  await gz("usr/share/man/man1/fansync.1.gz", o.docs.manpage);
  await text("usr/share/bash-completion/completions/fansync", o.docs.bash);
  await text("usr/share/zsh/vendor-completions/_fansync", o.docs.zsh);
  await gz("usr/share/doc/fansync/changelog.gz", debChangelog(o.version, o.buildDate));
  await gz("usr/share/doc/fansync/README.md.gz", await readFile(path.join(o.root, "README.md")));
  for (const [from, to] of [["master.yaml", "master.yaml"], ["replicator.yaml", "replicator.yaml"], ["node-us.yaml", "node.yaml"], ["sync-app.yaml", "sync.yaml"]] as const) {
    await put(path.join(o.root, "infra", "config", from), `usr/share/doc/fansync/examples/${to}`, 0o644);
  }
  for (const m of MAINTAINER_SCRIPTS) await put(path.join(o.root, "release", "debian", m), `DEBIAN/${m}`, 0o755);
  await writeFile(path.join(s, "DEBIAN/conffiles"), PACKAGED_FILES.filter((f) => f.conffile).map((f) => `/${f.to}\n`).join(""), { mode: 0o644 });
  const installedSizeKiB = await treeKiB(s, "DEBIAN");
  await writeFile(path.join(s, "DEBIAN/control"), debControl({ version: o.version, debArch: o.platform.debArch, installedSizeKiB }), { mode: 0o644 });
  // Directories in the staging tree get the usual 0755 whatever the umask.
  await run("find", [s, "-type", "d", "-exec", "chmod", "0755", "{}", "+"]);
  const z = debCompression();
  await run("dpkg-deb", ["--root-owner-group", `-Z${z.type}`, ...(z.level === undefined ? [] : [`-z${z.level}`]), "--build", s, o.out], { maxBuffer: 16 << 20 });
}

/** Installed size in KiB (dpkg's Installed-Size), ignoring the DEBIAN control directory. */
async function treeKiB(dir: string, skip: string): Promise<number> {
  const { stdout } = await run("find", [dir, "-path", path.join(dir, skip), "-prune", "-o", "-type", "f", "-printf", "%s\n"]);
  const bytes = stdout.split("\n").filter(Boolean).reduce((n, l) => n + Number(l), 0);
  return Math.ceil(bytes / 1024);
}
