/** fansync's own version, read once from package.json (reports, metrics and `--version` agree). */
import { readFileSync } from "node:fs";

/** The version string of this fansync install. */
export const FANSYNC_VERSION: string = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
