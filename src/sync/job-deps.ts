/** What every job (uploader, puller, replicator, rollback, doctor) is given: STYLE.md's injected trio. */
import type { Logger } from "../adapters/logger.ts";

/** Logger, the signal that aborts requests in flight, and the clock. */
export interface JobDeps {
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly now: () => Date;
}
