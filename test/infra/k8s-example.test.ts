/**
 * docs/examples/k8s-sidecar.yaml: a Deployment of the apps/v1 shape whose sidecar runs a pull
 * daemon into the volume nginx serves, with /healthz as the readiness probe, and flags this
 * fansync accepts (checked against `fansync pull --help`).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parse } from "yaml";
import { FANSYNC_BIN } from "../helpers/cli.ts";

type Container = { name: string; image: string; args?: string[]; volumeMounts: { name: string; mountPath: string }[]; readinessProbe?: { httpGet: { path: string; port: number } } };

test("the Kubernetes sidecar example: shape, shared volume, probe, and flags fansync knows", async () => {
  const doc = parse(await readFile(path.join(import.meta.dirname, "..", "..", "docs", "examples", "k8s-sidecar.yaml"), "utf8")) as {
    apiVersion: string; kind: string; metadata: { name: string };
    spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: { volumes: { name: string }[]; containers: Container[] } } };
  };
  assert.equal(doc.apiVersion, "apps/v1");
  assert.equal(doc.kind, "Deployment");
  assert.deepEqual(doc.spec.selector.matchLabels, doc.spec.template.metadata.labels);
  const { volumes, containers } = doc.spec.template.spec;
  for (const c of containers) {
    assert.ok(c.name && c.image, "every container has a name and an image");
    for (const m of c.volumeMounts) assert.ok(volumes.some((v) => v.name === m.name), `${c.name}: volume ${m.name} is declared`);
  }
  const web = containers.find((c) => c.name === "nginx") as Container;
  const side = containers.find((c) => c.name === "fansync") as Container;
  const args = side.args ?? [];
  assert.deepEqual(args.slice(0, 1), ["pull"]);
  const docroot = args[2] as string;
  const shared = side.volumeMounts.find((m) => m.mountPath === docroot)?.name;
  assert.ok(shared && web.volumeMounts.some((m) => m.name === shared), "nginx serves the volume the sidecar pulls into");
  assert.equal(web.readinessProbe?.httpGet.path, "/healthz");
  assert.ok(args.includes("--watch") && args.some((a) => a.startsWith("--http=0.0.0.0:9180")));
  const help = (await promisify(execFile)(process.execPath, [FANSYNC_BIN, "pull", "--help"])).stdout;
  for (const a of args.filter((x) => x.startsWith("--"))) assert.ok(help.includes(a.split("=")[0] as string), `fansync pull knows ${a}`);
});
