/**
 * Writes docs/compatibility.md: what each S3 server of the test suite does with the features fansync
 * relies on, as `fansync doctor --json` measures them (nothing in the table is typed by hand).
 *   npm run compat                      every server the harness can start (needs npm run build first)
 *   npm run compat -- moto versitygw    some of them
 * Each server is started by the harness (test/helpers/s3-server.ts), given one bucket with versioning
 * asked for (a server that cannot keep versions says so to doctor), and doctor runs once against it.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import { runCli } from "./helpers/cli.ts";
import { freePort, KINDS, launch, testEnv } from "./helpers/s3-server.ts";

interface JsonCheck {
  name: string;
  status: string;
  detail: string;
  data?: Record<string, unknown>;
}

const REPO = path.resolve(import.meta.dirname, "..");
const OUT = path.join(REPO, "docs", "compatibility.md");

/** The version each server runs, read from where it is pinned or installed. */
function versionOf(kind: string): string {
  const pin = (file: string, re: RegExp) => re.exec(readFileSync(path.join(REPO, file), "utf8"))?.[1] ?? "?";
  switch (kind) {
    case "moto":
      return execFileSync("python3", ["-c", "import moto; print(moto.__version__)"], { encoding: "utf8" }).trim();
    case "fauxqs":
      return (JSON.parse(readFileSync(path.join(REPO, "node_modules", "fauxqs", "package.json"), "utf8")) as { version: string }).version;
    case "localstack":
      return `localstack-core ${pin("localstack/install.sh", /^VERSION=(\S+)/m)}`;
    case "versitygw":
      return `${pin("versitygw/install.sh", /^VERSION=(\S+)/m)}, posix backend`;
    default:
      return "?";
  }
}

async function measure(kind: string): Promise<JsonCheck[]> {
  Object.assign(process.env, testEnv());
  const server = await launch(kind, await freePort());
  try {
    const bucket = await server.bucket("compat");
    // Asked of every server, whatever the harness's feature table says: doctor reports what it did.
    await server.client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: "Enabled" } })).catch(() => undefined);
    const r = await runCli(["doctor", `s3://${bucket}/site`, "--json", "--endpoint-url", server.endpoint, "--log-format", "json"]);
    const line = r.stdout.split("\n").find((l) => l.startsWith("["));
    if (!line) throw new Error(`${kind}: doctor printed no report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    return JSON.parse(line) as JsonCheck[];
  } finally {
    await server.stop();
  }
}

const yes = (b: unknown) => (b === true ? "yes" : b === false ? "**no**" : "not probed");

function row(kind: string, checks: JsonCheck[]): string[] {
  const get = (n: string) => checks.find((c) => c.name === n) ?? { name: n, status: "?", detail: "missing", data: {} };
  const cw = get("conditional-writes");
  const v = get("versioning");
  const mp = get("multipart-etag");
  const ck = get("checksums");
  const lo = get("listing-order");
  const d = (c: JsonCheck) => c.data ?? {};
  const conditional = cw.status === "FAIL" ? `FAIL: ${cw.detail}`
    : `If-None-Match: * ${yes(d(cw).ifNoneMatch)}; If-Match ${yes(d(cw).ifMatch)}; If-None-Match: * over a delete marker ${yes(d(cw).ifNoneMatchOverDeleteMarker)}`;
  const versioning = "status" in d(v)
    ? `${String(d(v).status)}${d(v).status === "Enabled" ? (d(v).putVersionId === false ? ", but a PUT got **no VersionId**" : ", a PUT returns a VersionId") : ""}`
    : v.detail;
  const multipart = typeof d(mp).etag === "string" ? (d(mp).suffix === null ? `**${String(d(mp).etag)}** (no -N suffix)` : `MD5-of-parts-${String(d(mp).suffix)} (S3 form)`) : `${mp.status}: ${mp.detail}`;
  const checksum = "stored" in d(ck) ? `${d(ck).stored ? (d(ck).matches ? "stored and returned" : "**returned, but not the sha256 sent**") : "not stored"}${d(ck).bytesEqual === false ? ", **bytes altered**" : ""}` : `${ck.status}: ${ck.detail}`;
  const listError = /: (\w+ \(HTTP \d+\))/.exec(lo.detail)?.[1];
  const listing = "byteOrder" in d(lo)
    ? `${d(lo).byteOrder ? "UTF-8 byte order" : "**not byte order**"}; ${Number(d(lo).missing) || Number(d(lo).repeated) ? `**${String(d(lo).missing)} missing, ${String(d(lo).repeated)} repeated**` : "complete"} over ${String(d(lo).pages)} pages`
    : `**the listing failed**${listError ? `: ${listError}` : ""} (details below)`;
  return [`${kind} (${versionOf(kind)})`, conditional, versioning, multipart, checksum, listing];
}

const kinds = process.argv.slice(2).length ? process.argv.slice(2) : [...KINDS];
const results: { kind: string; checks: JsonCheck[] }[] = [];
for (const kind of kinds) {
  process.stderr.write(`doctor on ${kind}...\n`);
  results.push({ kind, checks: await measure(kind) });
}
const esc = (s: string) => s.replace(/\|/g, "\\|");
const lines = [
  "# S3 servers: what fansync doctor measured",
  "",
  "Written by `npm run compat` (test/compatibility.ts), which starts each server of the test suite with the",
  "harness, makes one bucket, asks for versioning on it, and runs `fansync doctor --json` against it. Do",
  `not edit by hand: run it again. Last run: ${new Date().toISOString().slice(0, 10)}, Node ${process.version}.`,
  "What a server lacks and what the suite does about it: docs/testing.md.",
  "",
  "| server | conditional PUT | versioning | multipart ETag | sha256 checksum | listing (non-ASCII keys, paged) |",
  "| --- | --- | --- | --- | --- | --- |",
  ...results.map((r) => `| ${row(r.kind, r.checks).map(esc).join(" | ")} |`),
  "",
  "## What doctor said, check by check",
  "",
];
for (const r of results) {
  lines.push(`### ${r.kind}`, "");
  for (const c of r.checks) lines.push(`- \`${c.name}\` ${c.status}: ${c.detail}`);
  lines.push("");
}
writeFileSync(OUT, lines.join("\n"));
process.stderr.write(`wrote ${path.relative(REPO, OUT)}\n`);
