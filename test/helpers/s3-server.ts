/**
 * The real S3-compatible server an integration test talks to, started and stopped by the harness:
 * moto (server mode), fauxqs, LocalStack or versitygw, chosen by FANSYNC_TEST_SERVER and started
 * once per test file; or, with S3_ENDPOINT set, a server someone else started (test/run.sh starts
 * one LocalStack for a whole suite run that way, see with-server.ts). Facts about each server:
 * docs/testing.md and shared/S3-SERVERS.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, GetBucketVersioningCommand, ListObjectVersionsCommand, ListObjectsV2Command,
  PutBucketVersioningCommand, PutObjectCommand, S3Client,
} from "@aws-sdk/client-s3";

/** What the server implements; a test that needs a feature skips (saying which) where it lacks it. */
export interface ServerFeatures {
  readonly conditionalWrites: boolean;
  readonly versioning: boolean;
}

/** A running server. */
export interface TestServer {
  /** moto, fauxqs, localstack, versitygw, or "external" for an S3_ENDPOINT of unknown kind. */
  readonly kind: string;
  /** What test names and messages call it: the kind, and the endpoint when it was not started here. */
  readonly label: string;
  readonly endpoint: string;
  readonly features: ServerFeatures;
  readonly client: S3Client;
  /**
   * Create a bucket with a unique name derived from `hint`; returns the name. `versioning: true`
   * turns versioning on where the server has it; with FANSYNC_TEST_VERSIONING=all every bucket is
   * versioned unless the test asks for `versioning: false`.
   */
  bucket(hint: string, opts?: { versioning?: boolean }): Promise<string>;
  stop(): Promise<void>;
  /** The port the server listens on (0 when attached to S3_ENDPOINT). */
  readonly port: number;
}

/** The kinds the harness can start itself. */
export const KINDS = ["moto", "fauxqs", "localstack", "versitygw"] as const;

// What each kind implements, measured (shared/S3-SERVERS.md); an S3_ENDPOINT of another kind is probed.
const FEATURES: Readonly<Record<(typeof KINDS)[number], ServerFeatures>> = {
  moto: { conditionalWrites: true, versioning: true },
  fauxqs: { conditionalWrites: false, versioning: false },
  localstack: { conditionalWrites: true, versioning: true },
  versitygw: { conditionalWrites: true, versioning: true },
};

const REPO = path.resolve(import.meta.dirname, "..", "..");

// Test credentials for local servers only; real endpoints take theirs from the environment.
// versitygw is started with these as its root user; moto and LocalStack accept any.
export function testEnv(): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: process.env.S3_ENDPOINT ? (process.env.AWS_ACCESS_KEY_ID ?? "") : "test",
    AWS_SECRET_ACCESS_KEY: process.env.S3_ENDPOINT ? (process.env.AWS_SECRET_ACCESS_KEY ?? "") : "test",
    AWS_REGION: process.env.AWS_REGION ?? "us-east-1",
  };
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The server kind this run targets: FANSYNC_TEST_SERVER, else "external" with S3_ENDPOINT, else moto. */
export function serverKind(): string {
  return process.env.FANSYNC_TEST_SERVER || (process.env.S3_ENDPOINT ? "external" : "moto");
}

/** The name tests print for the server of this run (known before it starts, for describe titles). */
export function serverLabel(): string {
  return process.env.S3_ENDPOINT ? `${serverKind()} at ${process.env.S3_ENDPOINT}` : serverKind();
}

/** Start the configured server (or attach to S3_ENDPOINT). */
export async function startS3Server(): Promise<TestServer> {
  Object.assign(process.env, testEnv());
  delete process.env.AWS_ENDPOINT_URL;
  delete process.env.AWS_ENDPOINT_URL_S3;
  const kind = serverKind();
  if (process.env.S3_ENDPOINT) {
    const endpoint = process.env.S3_ENDPOINT.replace(/\/+$/, "");
    const known = (FEATURES as Record<string, ServerFeatures | undefined>)[kind];
    const features = overrideFeatures(known ?? (await probeFeatures(endpoint)));
    return wrap(kind, serverLabel(), endpoint, 0, undefined, features);
  }
  return launch(kind, await freePort());
}

// S3_CONDITIONAL_WRITES=0|1 / S3_VERSIONING=0|1 override what was measured or probed.
function overrideFeatures(f: ServerFeatures): ServerFeatures {
  const flag = (v: string | undefined, d: boolean) => (v === undefined || v === "" ? d : v !== "0");
  return { conditionalWrites: flag(process.env.S3_CONDITIONAL_WRITES, f.conditionalWrites), versioning: flag(process.env.S3_VERSIONING, f.versioning) };
}

/**
 * What a server of unknown kind implements, asked of the server itself in a scratch bucket it
 * deletes afterwards: a second `If-None-Match: *` PUT must be refused; versioning must be accepted
 * (not 501), reported Enabled and give a PUT a VersionId.
 */
async function probeFeatures(endpoint: string): Promise<ServerFeatures> {
  const client = newClient(endpoint);
  const bucket = `fansync-probe-${randomBytes(4).toString("hex")}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  try {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: "cond", Body: "1", IfNoneMatch: "*" }));
    const conditionalWrites = await client.send(new PutObjectCommand({ Bucket: bucket, Key: "cond", Body: "2", IfNoneMatch: "*" })).then(() => false, () => true);
    const versioning = (await versioningSupport(client, bucket)) === undefined;
    return { conditionalWrites, versioning };
  } finally {
    await emptyBucket(client, bucket);
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    client.destroy();
  }
}

/**
 * Turn versioning on for `bucket` and check it took: undefined when it did, else why not, for a
 * test's skip message (a server answers 501 NotImplemented, or accepts the call and keeps no versions).
 */
export async function versioningSupport(client: S3Client, bucket: string): Promise<string | undefined> {
  try {
    await client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: "Enabled" } }));
    const status = (await client.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status;
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: ".versioning-probe", Body: "x" }));
    await emptyBucket(client, bucket, ".versioning-probe");
    if (status !== "Enabled" || !put.VersionId) return `PutBucketVersioning accepted, but GetBucketVersioning says ${status ?? "nothing"} and a PUT got ${put.VersionId ? "a" : "no"} VersionId`;
    return undefined;
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 501) return `Get/PutBucketVersioning answered 501 ${(err as Error).name}`;
    throw err;
  }
}

/** Delete every object, version and delete marker under `prefix` (paged; unversioned servers: a listing). */
export async function emptyBucket(client: S3Client, bucket: string, prefix = ""): Promise<void> {
  let listed: { Key: string; VersionId?: string | undefined }[][] = [];
  try {
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      const res = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
      listed.push([...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])].flatMap((v) => (v.Key ? [{ Key: v.Key, ...(v.VersionId && v.VersionId !== "null" ? { VersionId: v.VersionId } : {}) }] : [])));
      keyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
      versionMarker = res.IsTruncated ? res.NextVersionIdMarker : undefined;
    } while (keyMarker);
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 501) throw err;
    listed = [];
    let token: string | undefined;
    do {
      const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      listed.push((res.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : [])));
      token = res.NextContinuationToken;
    } while (token);
  }
  for (const objects of listed) {
    for (let i = 0; i < objects.length; i += 1000) {
      const res = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects.slice(i, i + 1000), Quiet: true } }));
      if (res.Errors?.length) throw new Error(`emptying ${bucket}: ${res.Errors.length} objects not deleted (${res.Errors[0]?.Code} ${res.Errors[0]?.Key})`);
    }
  }
}

/** Start a server of `kind` on `port`. */
export async function launch(kind: string, port: number): Promise<TestServer> {
  const features = (FEATURES as Record<string, ServerFeatures | undefined>)[kind];
  if (!features) throw new Error(`unknown FANSYNC_TEST_SERVER ${kind} (one of ${KINDS.join(", ")}; or set S3_ENDPOINT for a server of your own)`);
  let child: ChildProcess;
  let dataDir: string | undefined;
  // The scripts (localstack/start.sh, versitygw/start.sh) print "ready <url>" once the server
  // answers; they run in their own process group so that stop() ends the server under them too.
  let ready: Promise<void> | undefined;
  if (kind === "moto") {
    child = spawn("python3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  } else if (kind === "fauxqs") {
    child = spawn(process.execPath, [new URL("./fauxqs-child.ts", import.meta.url).pathname], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PORT: String(port) },
    });
  } else {
    dataDir = mkdtempSync(path.join(tmpdir(), `fansync-${kind}-`));
    child = spawn("bash", [path.join(REPO, kind, "start.sh"), String(port), dataDir], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      env: { ...process.env, ROOT_ACCESS_KEY_ID: "test", ROOT_SECRET_ACCESS_KEY: "test" },
    });
    ready = new Promise<void>((resolve) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        if (/^ready http/m.test(out)) resolve();
      });
    });
  }
  const endpoint = `http://127.0.0.1:${port}`;
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  if (!ready) child.stdout?.resume();
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const stopChild = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const signal = (s: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined && dataDir !== undefined) process.kill(-child.pid, s);
        else child.kill(s);
      } catch {
        // already gone
      }
    };
    signal("SIGTERM");
    const t = setTimeout(() => signal("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  };
  // LocalStack takes 4-11 s to start on 2 busy cores, a cold install of it ~35 s more.
  const deadline = Date.now() + (kind === "localstack" ? 120_000 : 30_000);
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${kind} server exited with ${child.exitCode}: ${stderr}`);
      if (ready) {
        const started = await Promise.race([ready.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 200))]);
        if (started) break;
      } else {
        try {
          await fetch(endpoint + "/", { signal: AbortSignal.timeout(1000) });
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      if (Date.now() > deadline) throw new Error(`${kind} server did not start on ${endpoint}: ${stderr}`);
    }
  } catch (err) {
    await stopChild();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return wrap(kind, kind, endpoint, port, async () => {
    await stopChild();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, features);
}

function newClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

function wrap(kind: string, label: string, endpoint: string, port: number, stopServer: (() => Promise<void>) | undefined, features: ServerFeatures): TestServer {
  const client = newClient(endpoint);
  const versionAll = process.env.FANSYNC_TEST_VERSIONING === "all";
  return {
    kind,
    label,
    endpoint,
    features,
    client,
    port,
    async bucket(hint, opts = {}) {
      const name = `${hint.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 40)}-${randomBytes(3).toString("hex")}`;
      await client.send(new CreateBucketCommand({ Bucket: name }));
      if ((opts.versioning ?? versionAll) && features.versioning) {
        await client.send(new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: "Enabled" } }));
      }
      return name;
    },
    async stop() {
      client.destroy();
      await stopServer?.();
    },
  };
}
