/**
 * What a push, pull or replicate run tells its observers while it works: the progress bar on a TTY
 * and the daemons' Prometheus metrics both listen here, so neither reaches into the sync code.
 * Observers must be cheap and must not throw (they are called once per file).
 */

/** Which job is reporting. */
export type Role = "push" | "pull" | "replicate" | "sync";

/** Observer of one job's transfers; every method is optional. */
export interface TransferEvents {
  /** A batch of transfers is about to start: how many files and bytes it will move. */
  start?(t: { role: Role; files: number; bytes: number }): void;
  /** One file was transferred (or copied server-side, or found already in place on a resume). */
  file?(t: { role: Role; op: "upload" | "copy" | "download" | "skip"; bytes: number }): void;
  /** One file failed after its retries. `errorClass` is the error's name (e.g. RemoteError). */
  failed?(t: { role: Role; errorClass: string }): void;
  /** The batch ended (successfully or not). */
  end?(t: { role: Role; ok: boolean }): void;
}

/** Fan one event stream out to several observers. */
export function fanOutEvents(...observers: readonly (TransferEvents | undefined)[]): TransferEvents {
  const all = observers.filter((o): o is TransferEvents => o !== undefined);
  return {
    start: (t) => all.forEach((o) => o.start?.(t)),
    file: (t) => all.forEach((o) => o.file?.(t)),
    failed: (t) => all.forEach((o) => o.failed?.(t)),
    end: (t) => all.forEach((o) => o.end?.(t)),
  };
}
