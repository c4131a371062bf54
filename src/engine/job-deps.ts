/** What every job (uploader, puller, replicator, rollback, doctor) is given: STYLE.md's injected trio. */
import type { Logger } from "../adapters/logger.ts";

/** Logger, the signal that aborts requests in flight, and the clock. */
export interface JobDeps {
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly now: () => Date;
}

/** One generation a writer published (or a node applied): what changed in it. */
export interface GenerationDone {
  /** The location's s3:// URL. */
  readonly location: string;
  readonly generation: number;
  /** Paths written (content or metadata) and paths removed, relative to the location's prefix. */
  readonly changed: readonly string[];
  readonly deleted: readonly string[];
}

/** What a writer tells after each generation (CDN invalidation, --on-publish): never waited for, never throws. */
export interface PublishDeps {
  readonly afterGeneration?: ((g: GenerationDone) => void) | undefined;
}
