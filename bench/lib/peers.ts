// The tools being compared, as command lines. Every tool talks to the counting proxy, runs with the
// same concurrency where it has such a knob, and gets a complete, explicit environment.
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CommandSpec } from "./measure.ts";

/** Where one tool run reads and writes, shared by all tools. */
export type ToolContext = {
  /** The counting proxy's endpoint. */
  endpoint: string;
  bucket: string;
  prefix: string;
  concurrency: number;
  /** Run the tool with its own default concurrency (the WAN rows "each tool's defaults"). */
  toolDefaults?: boolean;
  /** Private scratch directory of this tool run (configs, state dirs). */
  scratch: string;
  /** The tree's listing, one relative path a line (for the SDK loop, which does not list). */
  keysFile: string;
  /** Base environment: PATH, credentials, locale. */
  env: Record<string, string>;
};

/** Whether a tool can run here, and its version. */
export type Availability = { ok: true; version: string } | { ok: false; reason: string };

/** One compared tool. `push`/`pull` return undefined for steps the tool has no notion of. */
export type Tool = {
  id: string;
  label: string;
  check(): Availability;
  push(ctx: ToolContext, dir: string): CommandSpec | undefined;
  pull(ctx: ToolContext, dir: string): CommandSpec | undefined;
  /** False for tools that re-transfer everything (no no-op or one-file-changed rows). */
  incremental: boolean;
};

/** Environment shared by every tool: credentials, region, UTF-8 locale (Python tools need it for NFD names). */
export function baseEnv(): Record<string, string> {
  // AWS_CA_BUNDLE is deliberately not passed on: the machine sets it globally and rclone 1.60 fails
  // with it set (S3-SERVERS.md); every endpoint here is plain http on 127.0.0.1 anyway.
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    LANG: "C.UTF-8",
    LC_ALL: "C.UTF-8",
    AWS_ACCESS_KEY_ID: "bench",
    AWS_SECRET_ACCESS_KEY: "benchsecret",
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
}

/** First line of a command's output, or undefined when it cannot run. */
function versionLine(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: baseEnv(), timeout: 30_000 });
  if (r.error !== undefined || r.status !== 0) return undefined;
  return `${r.stdout}${r.stderr}`.trim().split("\n")[0];
}

const s3url = (ctx: ToolContext): string => `s3://${ctx.bucket}/${ctx.prefix}`;

/** fansync itself, from FANSYNC_REPO, using exactly the CLI contract of issue 6. */
export function fansyncTool(repo: string, buildNote: string | undefined): Tool {
  const bin = join(repo, "bin/fansync.js");
  const common = (ctx: ToolContext, stateDir: string): string[] => [
    "--endpoint-url", ctx.endpoint, "--state-dir", stateDir, ...(ctx.toolDefaults === true ? [] : ["--concurrency", String(ctx.concurrency)]), "--log-level", "warn",
  ];
  return {
    id: "fansync",
    label: "fansync",
    incremental: true,
    check: () => {
      if (buildNote !== undefined) return { ok: false, reason: buildNote };
      if (!existsSync(join(repo, "dist/cli/main.js"))) return { ok: false, reason: `no ${join(repo, "dist/cli/main.js")}` };
      const help = spawnSync(process.execPath, [bin, "--help"], { encoding: "utf8", timeout: 30_000 });
      const text = `${help.stdout}${help.stderr}`;
      // The skeleton's placeholder entry prints only "fansync": the CLI counts as built once its
      // help names the push and pull commands of the contract.
      if (help.status !== 0 || !/\bpush\b/.test(text) || !/\bpull\b/.test(text)) {
        return { ok: false, reason: "CLI has no push/pull commands yet" };
      }
      const v = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8", timeout: 30_000 });
      return { ok: true, version: `fansync ${v.stdout.trim() || "?"}` };
    },
    // Run as operators do (`fansync ...`): the launcher's shebang carries fansync's Node flags.
    push: (ctx, dir) => ({
      cmd: bin,
      args: ["push", dir, s3url(ctx), ...common(ctx, join(ctx.scratch, "push-state"))],
      env: ctx.env,
    }),
    pull: (ctx, dir) => ({
      cmd: bin,
      args: ["pull", s3url(ctx), dir, ...common(ctx, join(ctx.scratch, "pull-state"))],
      env: ctx.env,
    }),
  };
}

/** rclone sync, configured through RCLONE_CONFIG_BENCH_* (provider Other, path-style). */
export function rcloneTool(fastList: boolean): Tool {
  const env = (ctx: ToolContext): Record<string, string> => {
    const conf = join(ctx.scratch, "rclone.conf");
    writeFileSync(conf, "");
    return {
      ...ctx.env,
      RCLONE_CONFIG: conf,
      RCLONE_CONFIG_BENCH_TYPE: "s3",
      RCLONE_CONFIG_BENCH_PROVIDER: "Other",
      RCLONE_CONFIG_BENCH_ENV_AUTH: "false",
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: ctx.env.AWS_ACCESS_KEY_ID ?? "",
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: ctx.env.AWS_SECRET_ACCESS_KEY ?? "",
      RCLONE_CONFIG_BENCH_ENDPOINT: ctx.endpoint,
      RCLONE_CONFIG_BENCH_REGION: "us-east-1",
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: "true",
    };
  };
  const flags = (ctx: ToolContext): string[] => [
    // rclone 1.60 otherwise treats NFC/NFD twin names as one and silently skips one (S3-SERVERS.md).
    "--no-unicode-normalization",
    ...(ctx.toolDefaults === true ? [] : ["--transfers", String(ctx.concurrency), "--checkers", String(ctx.concurrency)]),
    // Keep single PUTs under fauxqs's ~11 MiB limit (rclone's default cutoff is 200 MiB).
    "--s3-upload-cutoff", "8M",
    "--s3-chunk-size", "8M",
    ...(fastList ? ["--fast-list"] : []),
  ];
  const remote = (ctx: ToolContext): string => `bench:${ctx.bucket}/${ctx.prefix}`;
  return {
    id: fastList ? "rclone-fast-list" : "rclone",
    label: fastList ? "rclone --fast-list" : "rclone",
    incremental: true,
    check: () => {
      const v = versionLine("rclone", ["version"]);
      return v === undefined ? { ok: false, reason: "rclone not found (apt-get install rclone)" } : { ok: true, version: v };
    },
    push: (ctx, dir) => ({ cmd: "rclone", args: ["sync", dir, remote(ctx), ...flags(ctx)], env: env(ctx) }),
    pull: (ctx, dir) => ({ cmd: "rclone", args: ["sync", remote(ctx), dir, ...flags(ctx)], env: env(ctx) }),
  };
}

/** Debian's aws cli v2 (`/usr/bin/aws`, never a pyenv shim that may come first on PATH). */
export function awsTool(path = "/usr/bin/aws"): Tool {
  const env = (ctx: ToolContext): Record<string, string> => {
    const config = join(ctx.scratch, "aws-config");
    const creds = join(ctx.scratch, "aws-credentials");
    // 8 MB multipart parts are the default, stated anyway: fauxqs refuses single PUTs over ~11 MiB.
    writeFileSync(
      config,
      [
        "[default]",
        "region = us-east-1",
        "s3 =",
        `  max_concurrent_requests = ${ctx.concurrency}`,
        "  addressing_style = path",
        "  multipart_threshold = 8MB",
        "  multipart_chunksize = 8MB",
        "",
      ].join("\n"),
    );
    writeFileSync(creds, "");
    return { ...ctx.env, AWS_CONFIG_FILE: config, AWS_SHARED_CREDENTIALS_FILE: creds };
  };
  const flags = (ctx: ToolContext): string[] => ["--endpoint-url", ctx.endpoint, "--delete", "--no-progress", "--only-show-errors"];
  return {
    id: "aws",
    label: "aws s3 sync",
    incremental: true,
    check: () => {
      if (!existsSync(path)) return { ok: false, reason: `${path} not found (apt-get install awscli)` };
      const v = versionLine(path, ["--version"]);
      return v === undefined ? { ok: false, reason: `${path} --version failed` } : { ok: true, version: v.split(" ")[0] ?? v };
    },
    push: (ctx, dir) => ({ cmd: path, args: ["s3", "sync", dir, s3url(ctx), ...flags(ctx)], env: env(ctx) }),
    pull: (ctx, dir) => ({ cmd: path, args: ["s3", "sync", s3url(ctx), dir, ...flags(ctx)], env: env(ctx) }),
  };
}

/** s3cmd sync with a private .s3cfg (path-style: host_bucket without %(bucket)s, plain http). */
export function s3cmdTool(): Tool {
  const cfg = (ctx: ToolContext): string => {
    const file = join(ctx.scratch, "s3cfg");
    const hostPort = new URL(ctx.endpoint).host;
    writeFileSync(
      file,
      [
        "[default]",
        `access_key = ${ctx.env.AWS_ACCESS_KEY_ID ?? ""}`,
        `secret_key = ${ctx.env.AWS_SECRET_ACCESS_KEY ?? ""}`,
        `host_base = ${hostPort}`,
        `host_bucket = ${hostPort}`,
        "use_https = False",
        "signature_v2 = False",
        "bucket_location = us-east-1",
        // Below fauxqs's ~11 MiB single-PUT limit (s3cmd's default part is 15 MB).
        "multipart_chunk_size_mb = 8",
        "",
      ].join("\n"),
    );
    return file;
  };
  // s3cmd has no parallel transfers: it always moves one file at a time.
  const flags = ["--no-progress", "--quiet", "--delete-removed"];
  return {
    id: "s3cmd",
    label: "s3cmd sync",
    incremental: true,
    check: () => {
      const v = versionLine("s3cmd", ["--version"]);
      return v === undefined ? { ok: false, reason: "s3cmd not found (apt-get install s3cmd)" } : { ok: true, version: v };
    },
    push: (ctx, dir) => ({
      cmd: "s3cmd",
      args: ["-c", cfg(ctx), "sync", ...flags, `${dir.replace(/\/$/, "")}/`, `${s3url(ctx).replace(/\/$/, "")}/`],
      env: ctx.env,
    }),
    pull: (ctx, dir) => ({
      cmd: "s3cmd",
      args: ["-c", cfg(ctx), "sync", ...flags, `${s3url(ctx).replace(/\/$/, "")}/`, `${dir.replace(/\/$/, "")}/`],
      env: ctx.env,
    }),
  };
}

/**
 * Bare SDK PutObject/GetObject loop, 32 in flight: the ceiling of a Node + SDK client on this server.
 * `checksums` true keeps the SDK's defaults (a CRC32 on every PutObject, validated GETs), which
 * fansync does not send; false sets WHEN_REQUIRED, as fansync's client does.
 */
export function sdkLoopTool(scriptPath: string, sdkVersion: string, checksums: boolean): Tool {
  const env = (ctx: ToolContext): Record<string, string> => ({
    ...ctx.env,
    BENCH_ENDPOINT: ctx.endpoint,
    ...(checksums ? {} : { BENCH_SDK_CHECKSUMS: "WHEN_REQUIRED" }),
  });
  return {
    id: checksums ? "sdk-loop" : "sdk-loop-nocrc",
    label: checksums ? "SDK loop, CRC32 checksums (32 in flight)" : "SDK loop, no checksums (32 in flight)",
    incremental: false,
    check: () => ({ ok: true, version: `@aws-sdk/client-s3 ${sdkVersion}` }),
    push: (ctx, dir) => ({ cmd: process.execPath, args: [scriptPath, "put", dir, ctx.bucket, ctx.prefix, ctx.keysFile], env: env(ctx) }),
    pull: (ctx, dir) => ({ cmd: process.execPath, args: [scriptPath, "get", ctx.bucket, ctx.prefix, dir, ctx.keysFile], env: env(ctx) }),
  };
}

/**
 * Bare `node:http` loop, 32 in flight, the same PutObject/GetObject requests signed with the SDK's
 * SignatureV4 and no other SDK code: the ceiling of Node itself on this server (lib/http-loop.ts).
 */
export function httpLoopTool(scriptPath: string): Tool {
  return {
    id: "http-loop",
    label: "node:http loop, SigV4 (32 in flight)",
    incremental: false,
    check: () => ({ ok: true, version: `node:http ${process.version} + @smithy/signature-v4` }),
    push: (ctx, dir) => ({ cmd: process.execPath, args: [scriptPath, "put", dir, ctx.bucket, ctx.prefix, ctx.keysFile], env: { ...ctx.env, BENCH_ENDPOINT: ctx.endpoint } }),
    pull: (ctx, dir) => ({ cmd: process.execPath, args: [scriptPath, "get", ctx.bucket, ctx.prefix, dir, ctx.keysFile], env: { ...ctx.env, BENCH_ENDPOINT: ctx.endpoint } }),
  };
}
