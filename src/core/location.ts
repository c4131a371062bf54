/** Parsing of `s3://bucket/prefix` locations, the way the aws cli and s5cmd write them. */
import { UsageError } from "./errors.ts";

/** A bucket and a key prefix ("" or ending in "/"). */
export interface Location {
  readonly bucket: string;
  readonly prefix: string;
}

// S3's bucket naming rules, relaxed to what S3-compatible servers also accept (dots, dashes).
const BUCKET_RE = /^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$/;

/** Parse `s3://bucket[/prefix]`; the prefix is normalised to end with "/" when not empty. */
export function parseLocation(url: string): Location {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!m) throw new UsageError(`not an s3 location: ${JSON.stringify(url)}`, { hint: "write it as s3://bucket/prefix" });
  const bucket = m[1] ?? "";
  if (!BUCKET_RE.test(bucket)) {
    throw new UsageError(`invalid bucket name ${JSON.stringify(bucket)} in ${url}`, {
      hint: "bucket names are 3-63 characters of lowercase letters, digits, dots and dashes",
    });
  }
  let prefix = m[2] ?? "";
  if (prefix.split("/").some((seg, i, all) => (seg === "" && i < all.length - 1) || seg === "." || seg === "..")) {
    throw new UsageError(`invalid prefix in ${url}: empty, "." or ".." segments`, { hint: "write it as s3://bucket/some/prefix" });
  }
  if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
  return { bucket, prefix };
}

/** Render a location back as an s3:// URL. */
export function formatLocation(loc: Location): string {
  return `s3://${loc.bucket}/${loc.prefix}`;
}

/** The reserved meta prefix under a location: never served, never uploaded from the docroot. */
export function metaPrefix(loc: Location): string {
  return `${loc.prefix}.fansync/`;
}
