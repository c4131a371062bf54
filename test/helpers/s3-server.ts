/**
 * The real S3-compatible server an integration test talks to, started and stopped by the harness:
 * moto (server mode) or fauxqs, chosen by FANSYNC_TEST_SERVER, or any endpoint given by S3_ENDPOINT.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { CreateBucketCommand, PutBucketVersioningCommand, S3Client } from "@aws-sdk/client-s3";

/** What the server implements; a test that needs a feature skips (saying which) where it lacks it. */
export interface ServerFeatures {
  readonly conditionalWrites: boolean;
  readonly versioning: boolean;
}

/** A running server. */
export interface TestServer {
  readonly kind: string;
  readonly endpoint: string;
  readonly features: ServerFeatures;
  readonly client: S3Client;
  /** Create a bucket with a unique name derived from `hint`; returns the name. */
  bucket(hint: string, opts?: { versioning?: boolean }): Promise<string>;
  stop(): Promise<void>;
  /** Stop the process but remember the port (to simulate an outage); moto and fauxqs lose their data. */
  readonly port: number;
}

// Test credentials for local servers only; real endpoints take theirs from the environment.
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

/** The server kind this run targets. */
export function serverKind(): string {
  if (process.env.S3_ENDPOINT) return "external";
  return process.env.FANSYNC_TEST_SERVER ?? "moto";
}

/** Start the configured server (or attach to S3_ENDPOINT). */
export async function startS3Server(): Promise<TestServer> {
  Object.assign(process.env, testEnv());
  delete process.env.AWS_ENDPOINT_URL;
  delete process.env.AWS_ENDPOINT_URL_S3;
  const kind = serverKind();
  if (kind === "external") {
    return wrap("external", process.env.S3_ENDPOINT as string, 0, undefined, {
      conditionalWrites: process.env.S3_CONDITIONAL_WRITES !== "0",
      versioning: process.env.S3_VERSIONING !== "0",
    });
  }
  const port = await freePort();
  return launch(kind, port);
}

/** Start a server of `kind` on `port` (also used to bring a stopped server back). */
export async function launch(kind: string, port: number): Promise<TestServer> {
  let child: ChildProcess;
  if (kind === "moto") {
    child = spawn("python3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  } else if (kind === "fauxqs") {
    child = spawn(process.execPath, [new URL("./fauxqs-child.ts", import.meta.url).pathname], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PORT: String(port) },
    });
  } else throw new Error(`unknown FANSYNC_TEST_SERVER ${kind} (moto or fauxqs)`);
  const endpoint = `http://127.0.0.1:${port}`;
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  child.stdout?.resume();
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${kind} server exited with ${child.exitCode}: ${stderr}`);
    try {
      await fetch(endpoint + "/", { signal: AbortSignal.timeout(1000) });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${kind} server did not start on ${endpoint}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return wrap(kind, endpoint, port, child, { conditionalWrites: kind === "moto", versioning: kind === "moto" });
}

function wrap(kind: string, endpoint: string, port: number, child: ChildProcess | undefined, features: ServerFeatures): TestServer {
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  return {
    kind,
    endpoint,
    features,
    client,
    port,
    async bucket(hint, opts = {}) {
      const name = `${hint.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 40)}-${randomBytes(3).toString("hex")}`;
      await client.send(new CreateBucketCommand({ Bucket: name }));
      if (opts.versioning && features.versioning) {
        await client.send(new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: "Enabled" } }));
      }
      return name;
    },
    async stop() {
      client.destroy();
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
