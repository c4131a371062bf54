/** Builds the S3 store for a location from the resolved config (per-location endpoint/profile). */
import type { Config } from "../core/config.ts";
import { settingsFor } from "../core/config.ts";
import type { Location } from "../core/location.ts";
import { createS3Client } from "../adapters/s3-client.ts";
import { S3Store } from "../adapters/s3-store.ts";
import { parseDuration } from "../core/units.ts";
import { UsageError } from "../core/errors.ts";

/**
 * FANSYNC_REQUEST_TIMEOUT (a duration: "5s", "500ms") lowers the per-request socket timeout from
 * its 60 s default, for links where a stalled connection must fail over quickly (and for the stall
 * tests). An environment setting, not a flag: it tunes the transport, not what a run does.
 */
function requestTimeoutFromEnv(): number | undefined {
  const raw = process.env.FANSYNC_REQUEST_TIMEOUT;
  if (raw === undefined || raw === "") return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined || ms < 100) throw new UsageError(`FANSYNC_REQUEST_TIMEOUT=${JSON.stringify(raw)} is not a duration of at least 100ms`, { hint: "write it as 5s or 500ms, or unset it" });
  return ms;
}

/** An S3 store for `loc` with its own connection settings. */
export function storeFor(cfg: Config, loc: Location): S3Store {
  const s = settingsFor(cfg, loc);
  const client = createS3Client({ ...s, maxSockets: Math.max(8, cfg.concurrency * 2), requestTimeoutMs: requestTimeoutFromEnv() });
  const endpoint = s.endpointUrl ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL ?? "AWS S3";
  return new S3Store({ client, bucket: loc.bucket, endpoint });
}
