/** Content-Type from a path's extension, so the bucket can be a CDN origin (pure). */
import mime from "mime";

// Text types get an explicit charset: browsers otherwise guess, and CDNs pass the header through.
const CHARSET = /^(text\/|application\/(javascript|json|xml|manifest\+json|ld\+json)|image\/svg\+xml)/;

/** The Content-Type header for a relative path. */
export function contentTypeFor(p: string): string {
  const t = mime.getType(p) ?? "application/octet-stream";
  return CHARSET.test(t) ? `${t}; charset=utf-8` : t;
}
