/** The headers fansync writes with every content object (uploader and rollback alike). */
import { contentTypeFor } from "../core/content-type.ts";
import type { ObjectAttrs } from "../adapters/object-store.ts";

/**
 * Content-Type from the path, Cache-Control from the configured rules, and the metadata a reader
 * checks (sha256) or restores (mtime, mode). The manifest stays authoritative for all three.
 */
export function contentAttrs(f: { readonly path: string; readonly mtimeMs: number; readonly mode: number; readonly sha256: string }, cacheControl: (p: string) => string | undefined): ObjectAttrs {
  return {
    contentType: contentTypeFor(f.path),
    cacheControl: cacheControl(f.path),
    metadata: { sha256: f.sha256, mtime: String(f.mtimeMs), mode: f.mode.toString(8) },
  };
}
