/**
 * The README's "Deploying" section as the install test runs it: each ```sh block follows a
 * `<!-- step: NAME -->` marker, each ```text block of shown output a `<!-- output: NAME -->` one.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";

const README = path.join(import.meta.dirname, "..", "..", "README.md");
const SECTION = "## Deploying";

/** The section's blocks: commands per step, shown outputs per step, and any sh block with no marker. */
export interface DeploySteps {
  readonly blocks: Map<string, { readonly commands: readonly string[] }>;
  readonly outputs: Map<string, string>;
  readonly unmarked: readonly string[];
}

/** Parse the README's Deploying section. */
export async function readmeDeploySteps(file = README): Promise<DeploySteps> {
  return parseDeploySteps(await readFile(file, "utf8"));
}

/** Parse the text of a README (exported for its own test). */
export function parseDeploySteps(text: string): DeploySteps {
  const lines = text.split("\n");
  const start = lines.indexOf(SECTION);
  if (start < 0) throw new Error(`README has no "${SECTION}" section`);
  const endRel = lines.slice(start + 1).findIndex((l) => l.startsWith("## "));
  const body = lines.slice(start + 1, endRel < 0 ? undefined : start + 1 + endRel);
  const blocks = new Map<string, { commands: string[] }>();
  const outputs = new Map<string, string>();
  const unmarked: string[] = [];
  let marker: { kind: "step" | "output"; name: string } | undefined;
  for (let i = 0; i < body.length; i++) {
    const line = body[i] as string;
    const m = /^<!-- (step|output): ([a-z-]+) -->$/.exec(line);
    if (m) {
      marker = { kind: m[1] as "step" | "output", name: m[2] as string };
      continue;
    }
    const fence = /^```(\w*)$/.exec(line);
    if (!fence) {
      if (line.trim() !== "") marker = undefined;
      continue;
    }
    const lang = fence[1];
    const content: string[] = [];
    for (i++; i < body.length && body[i] !== "```"; i++) content.push(body[i] as string);
    if (lang === "sh") {
      if (marker?.kind !== "step") {
        unmarked.push(content.join("; "));
      } else {
        if (blocks.has(marker.name)) throw new Error(`README: two blocks for step ${marker.name}`);
        // One command a line; a trailing `# comment` is the reader's, not the shell's concern.
        const commands = content.map((c) => c.replace(/\s+#.*$/, "").trim()).filter((c) => c !== "" && !c.startsWith("#"));
        blocks.set(marker.name, { commands });
      }
    } else if (marker?.kind === "output") {
      outputs.set(marker.name, content.join("\n") + "\n");
    }
    marker = undefined;
  }
  return { blocks, outputs, unmarked };
}

/**
 * Output lines with what differs between runs taken out: the host name (a node's id), writer ids
 * (host:pid:random), ages and durations, and column padding (which follows name lengths). Lines
 * starting with `$ ` are the commands a shown transcript quotes.
 */
export function normalizeOutput(text: string, o: { host: string }): string[] {
  const host = new RegExp(`(?<![\\w.-])${o.host.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\w.-])`, "g");
  return text
    .split("\n")
    .filter((l) => !l.startsWith("$ "))
    .map((l) => l.replace(/\bwriter \S+/g, "writer <writer>"))
    .map((l) => l.replace(host, "<host>"))
    .map((l) => l.replace(/\b\d+(\.\d+)?(ms|s|m|min|h|d)\b/g, "<t>"))
    .map((l) => l.replace(/\s+/g, " ").trim())
    .filter((l) => l !== "");
}
