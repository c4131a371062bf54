// Launches the S3 server under test in a child process: fauxqs (default) or moto (BENCH_SERVER=moto).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { S3Client, CreateBucketCommand } from "@aws-sdk/client-s3";

/** Which server implementation to run. */
export type ServerKind = "fauxqs" | "moto";

/** A running S3 server. */
export type S3Server = {
  kind: ServerKind;
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
};

const here = dirname(fileURLToPath(import.meta.url));

/** Free TCP port on 127.0.0.1 (for servers that cannot be told to pick one, like moto). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Version string of the chosen server, or a "missing: …" note. */
export function serverVersion(kind: ServerKind, repoRoot: string): string {
  if (kind === "fauxqs") {
    try {
      const pkg = JSON.parse(readFileSync(join(repoRoot, "node_modules/fauxqs/package.json"), "utf8")) as { version: string };
      return `fauxqs ${pkg.version}`;
    } catch {
      return "fauxqs (version unknown)";
    }
  }
  const r = spawnSync("python3", ["-c", "import moto; print(moto.__version__)"], { encoding: "utf8" });
  return r.status === 0 ? `moto ${r.stdout.trim()}` : "moto (missing: pip install 'moto[server]==5.2.5')";
}

/** Resolve when `child` has exited; SIGKILL it after `ms`. */
export function waitExit(child: ChildProcess, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      resolve();
    }, ms);
    child.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Creates buckets through the S3 API (moto has no in-process hook). */
async function createBucketsViaApi(endpoint: string, buckets: readonly string[]): Promise<void> {
  const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "bench", secretAccessKey: "benchsecret" },
  });
  try {
    for (const b of buckets) await client.send(new CreateBucketCommand({ Bucket: b }));
  } finally {
    client.destroy();
  }
}

/** Starts a fresh server (empty, in memory) with the given buckets. */
export async function startS3Server(kind: ServerKind, buckets: readonly string[]): Promise<S3Server> {
  if (kind === "fauxqs") {
    // fauxqs keeps every object in memory: give it room for the 1M-entry tree.
    const child = spawn(process.execPath, ["--max-old-space-size=12288", join(here, "fauxqs-child.ts"), ...buckets], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const port = await new Promise<number>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.once("line", (line) => {
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch (err) {
          reject(new Error(`fauxqs child printed ${JSON.stringify(line)}`, { cause: err }));
        }
      });
      child.once("exit", (code) => reject(new Error(`fauxqs child exited with ${code} before listening`)));
    });
    return {
      kind,
      endpoint: `http://127.0.0.1:${port}`,
      pid: child.pid ?? 0,
      stop: async () => {
        child.kill("SIGTERM");
        await waitExit(child, 10_000);
      },
    };
  }
  const port = await freePort();
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "ignore"] });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error("moto_server exited at start (is moto[server] installed?)");
    try {
      await createBucketsViaApi(endpoint, buckets);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error("moto_server did not answer within 30 s", { cause: err });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    kind,
    endpoint,
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill("SIGTERM");
      await waitExit(child, 10_000);
    },
  };
}
