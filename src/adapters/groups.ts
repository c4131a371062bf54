/** `--group NAME`: the numeric id of a local group, from the group database (/etc/group). */
import { readFile } from "node:fs/promises";
import { UsageError } from "../core/errors.ts";

/** The gid of `group` (a name or a number); a name this machine does not know is a usage error. */
export async function resolveGroup(group: string, groupFile = "/etc/group"): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const text = await readFile(groupFile, "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new UsageError(`--group ${group}: no such group on this machine (${groupFile})`, { hint: "give the web server's group (www-data on Debian, nginx on RHEL) or a numeric gid" });
}
