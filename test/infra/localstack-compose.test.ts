// localstack/docker-compose.yml: both emulators, pinned images, loopback-only ports, and init
// scripts that exist, are executable and are wired in.
import assert from "node:assert/strict";
import { access, constants, readFile, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";

const DIR = join(import.meta.dirname, "..", "..", "localstack");
const BUCKETS = ["fansync-primary", "fansync-us", "fansync-jp", "fansync-uk"];

type Service = { image?: string; ports?: unknown[]; volumes?: string[]; entrypoint?: string[] | string; depends_on?: Record<string, { condition: string }>; healthcheck?: unknown };
const compose = parse(await readFile(join(DIR, "docker-compose.yml"), "utf8")) as { services: Record<string, Service> };

async function assertExecutable(path: string): Promise<string> {
  const s = await stat(path);
  assert.ok(s.isFile(), `${path} is not a file`);
  assert.ok((s.mode & 0o111) !== 0, `${path} is not executable`);
  await access(path, constants.X_OK);
  const text = await readFile(path, "utf8");
  assert.match(text, /^#!\/bin\/(ba)?sh\n/);
  return text;
}

/** Host path of a volume that mounts onto `target`, resolved against localstack/. */
function hostPathMountedAt(service: Service, target: string): string | undefined {
  const volume = service.volumes?.find((v) => v.split(":")[1] === target);
  return volume ? join(DIR, posix.normalize(volume.split(":")[0] as string)) : undefined;
}

test("both emulators are there, with exactly pinned images", () => {
  assert.equal(compose.services.localstack?.image, "localstack/localstack:4.14");
  assert.match(compose.services.minio?.image ?? "", /^quay\.io\/minio\/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
  assert.match(compose.services["minio-init"]?.image ?? "", /^quay\.io\/minio\/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
  for (const [name, s] of Object.entries(compose.services)) {
    assert.doesNotMatch(s.image ?? "", /:latest$|^[^:]+$/, `${name} image is not pinned`);
  }
});

test("every published port is bound to 127.0.0.1", () => {
  let published = 0;
  for (const [name, s] of Object.entries(compose.services)) {
    for (const p of s.ports ?? []) {
      published++;
      if (typeof p === "string") {
        assert.match(p, /^127\.0\.0\.1:\d+:\d+(\/tcp)?$/, `${name}: ${p}`);
      } else {
        // Long syntax: { target, published, host_ip }.
        assert.equal((p as { host_ip?: string }).host_ip, "127.0.0.1", `${name}: ${JSON.stringify(p)}`);
      }
    }
  }
  assert.deepEqual(
    Object.fromEntries(Object.entries(compose.services).map(([n, s]) => [n, s.ports ?? []])),
    { localstack: ["127.0.0.1:4566:4566"], minio: ["127.0.0.1:9000:9000", "127.0.0.1:9001:9001"], "minio-init": [] },
  );
  assert.equal(published, 3);
});

test("LocalStack mounts its ready.d hook, which is executable and creates the buckets", async () => {
  const dir = hostPathMountedAt(compose.services.localstack as Service, "/etc/localstack/init/ready.d");
  assert.equal(dir, join(DIR, "init", "ready.d"));
  const text = await assertExecutable(join(dir, "create-buckets.sh"));
  for (const b of BUCKETS) assert.ok(text.includes(b), `creates ${b}`);
  assert.match(text, /put-bucket-versioning --bucket fansync-primary --versioning-configuration Status=Enabled/);
});

test("the MinIO one-shot waits for a healthy server and runs its executable mc script", async () => {
  const init = compose.services["minio-init"] as Service;
  assert.deepEqual(init.depends_on, { minio: { condition: "service_healthy" } });
  assert.ok(compose.services.minio?.healthcheck, "minio needs a healthcheck for service_healthy");
  const entry = ([] as string[]).concat(init.entrypoint ?? []);
  assert.equal(entry.length, 1);
  const mountTarget = posix.dirname(entry[0] as string);
  const dir = hostPathMountedAt(init, mountTarget);
  assert.ok(dir, `nothing mounted at ${mountTarget}`);
  const text = await assertExecutable(join(dir, posix.basename(entry[0] as string)));
  for (const b of BUCKETS) assert.ok(text.includes(b), `creates ${b}`);
  assert.match(text, /mc version enable local\/fansync-primary/);
});

test("run-integ.sh is executable and exports the endpoint and test credentials", async () => {
  const text = await assertExecutable(join(DIR, "run-integ.sh"));
  for (const v of ["S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]) assert.match(text, new RegExp(`export[^\\n]*\\b${v}=`));
  assert.match(text, /npm run test:integ/);
  assert.match(text, /not real credentials/);
});
