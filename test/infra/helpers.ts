/** Shared helpers for the infra tests: synthesis from context, template lookups, a tiny IAM evaluator. */
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { parseInfraContext, type InfraConfig } from "../../infra/src/context.ts";
import { addFansyncStacks } from "../../infra/src/stacks.ts";

/** The context most tests start from: a primary, two regions, prefix "site/". */
export const BASE_CONTEXT: Readonly<Record<string, unknown>> = {
  "fansync:primaryBucket": "fs-primary",
  "fansync:primaryRegion": "eu-west-1",
  "fansync:regionalBuckets": "fs-us@us-east-1,fs-jp@ap-northeast-1",
  "fansync:prefix": "site/",
};

/** Parse a context exactly as infra/bin/app.ts does, failing the test on errors. */
export function configFrom(context: Readonly<Record<string, unknown>>): InfraConfig {
  const parsed = parseInfraContext((k) => context[k]);
  if (!parsed.ok) throw new Error(`context invalid: ${parsed.errors.join("; ")}`);
  return parsed.config;
}

/** Synthesised templates of one deployment. */
export type Synth = {
  readonly primary: Template;
  readonly regional: ReadonlyMap<string, Template>;
  readonly stacks: ReturnType<typeof addFansyncStacks>;
};

/** Build the app for `context` (merged over BASE_CONTEXT) and return every stack's template. */
export function synth(context: Readonly<Record<string, unknown>> = {}): Synth {
  const config = configFrom({ ...BASE_CONTEXT, ...context });
  const app = new App({ analyticsReporting: false });
  const stacks = addFansyncStacks(app, config);
  return {
    primary: Template.fromStack(stacks.primary),
    regional: new Map(stacks.regional.map((s, i) => [config.regional[i]?.bucketName ?? "", Template.fromStack(s)])),
    stacks,
  };
}

/** A CloudFormation resource as found in a template. */
export type CfnResource = { Type: string; Properties: Record<string, unknown> };

/** All resources of one type, by logical id. */
export function resourcesOf(template: Template, type: string): Record<string, CfnResource> {
  return template.findResources(type) as Record<string, CfnResource>;
}

/** The single resource of a type; fails unless there is exactly one. */
export function onlyResource(template: Template, type: string): CfnResource {
  const all = Object.values(resourcesOf(template, type));
  if (all.length !== 1) throw new Error(`expected exactly one ${type}, found ${all.length}`);
  return all[0] as CfnResource;
}

/** The PolicyDocument of the managed policy with this name, or undefined. */
export function managedPolicyDocument(template: Template, name: string): unknown {
  const hit = Object.values(resourcesOf(template, "AWS::IAM::ManagedPolicy")).find((r) => r.Properties.ManagedPolicyName === name);
  return hit?.Properties.PolicyDocument;
}

/**
 * IAM treats "x" and ["x"] alike and CDK writes single values unwrapped; wrap them so documents
 * from CDK and from plain JSON compare structurally. Order is kept: it is part of what we commit.
 */
export function normalizePolicy(doc: unknown): unknown {
  const d = doc as { Version: string; Statement: Record<string, unknown>[] };
  const arr = (v: unknown) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);
  return {
    Version: d.Version,
    Statement: d.Statement.map((s) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s)) {
        if (k === "Action" || k === "NotAction" || k === "Resource" || k === "NotResource") out[k] = arr(v);
        else if (k === "Condition") {
          out[k] = Object.fromEntries(
            Object.entries(v as Record<string, Record<string, unknown>>).map(([op, kv]) => [op, Object.fromEntries(Object.entries(kv).map(([ck, cv]) => [ck, arr(cv)]))]),
          );
        } else out[k] = v;
      }
      return out;
    }),
  };
}

// --- a deliberately small IAM evaluator, enough for bucket policies on one S3 request ---

/** Values the test substitutes for CloudFormation pseudo parameters and refs. */
export type Resolver = (value: unknown) => string;

/** Resolve Ref / Fn::GetAtt Arn / Fn::Join against a template (buckets by name, other refs by `refs`). */
export function resolverFor(template: Template, refs: Readonly<Record<string, string>>): Resolver {
  const resources = template.toJSON().Resources as Record<string, CfnResource>;
  const resolve: Resolver = (v) => {
    if (typeof v === "string") return v;
    if (typeof v === "number") return String(v);
    const o = v as Record<string, unknown>;
    if ("Ref" in o) {
      const id = o.Ref as string;
      if (id in refs) return refs[id] as string;
      const r = resources[id];
      if (r?.Type === "AWS::S3::Bucket") return r.Properties.BucketName as string;
      throw new Error(`cannot resolve Ref ${id}`);
    }
    if ("Fn::GetAtt" in o) {
      const [id, attr] = o["Fn::GetAtt"] as [string, string];
      const r = resources[id];
      if (r?.Type === "AWS::S3::Bucket" && attr === "Arn") return `arn:${refs["AWS::Partition"] ?? "aws"}:s3:::${r.Properties.BucketName as string}`;
      throw new Error(`cannot resolve GetAtt ${id}.${attr}`);
    }
    if ("Fn::Join" in o) {
      const [sep, parts] = o["Fn::Join"] as [string, unknown[]];
      return parts.map(resolve).join(sep);
    }
    throw new Error(`cannot resolve ${JSON.stringify(v)}`);
  };
  return resolve;
}

/** One request to judge: who, what, on which ARN, with which condition-key values. */
export type Request = {
  readonly principal: { readonly Service: string } | { readonly AWS: string };
  readonly action: string;
  readonly resource: string;
  readonly context: Readonly<Record<string, string>>;
};

function glob(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
  return re.test(value);
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [v];
}

/**
 * Decision of a resource policy for one request: explicit Deny wins, then any Allow, else
 * implicit deny. Supports the operators these templates use; anything else throws, so a test
 * can never pass because the evaluator skipped a condition it did not understand.
 */
export function evaluate(statements: readonly Record<string, unknown>[], req: Request, resolve: Resolver): "allow" | "deny" {
  let allowed = false;
  for (const s of statements) {
    const principal = s.Principal as Record<string, unknown> | undefined;
    const principalMatches =
      principal === undefined ||
      Object.entries(principal).some(([kind, ids]) => list(ids).some((id) => id === "*" || (kind in req.principal && (req.principal as Record<string, string>)[kind] === id)));
    if (!principalMatches) continue;
    if (!list(s.Action).some((a) => glob(String(a), req.action))) continue;
    if (s.Resource !== undefined && !list(s.Resource).some((r) => glob(resolve(r), req.resource))) continue;
    if (s.NotResource !== undefined && list(s.NotResource).some((r) => glob(resolve(r), req.resource))) continue;
    const conditions = (s.Condition ?? {}) as Record<string, Record<string, unknown>>;
    const conditionsHold = Object.entries(conditions).every(([op, kv]) =>
      Object.entries(kv).every(([key, expected]) => {
        const actual = req.context[key];
        if (actual === undefined) throw new Error(`request lacks condition key ${key}`);
        const values = list(expected).map(resolve);
        switch (op) {
          case "Bool":
          case "StringEquals":
            return values.includes(actual);
          case "StringLike":
            return values.some((p) => glob(p, actual));
          case "NumericLessThan":
            return values.some((x) => Number(actual) < Number(x));
          default:
            throw new Error(`evaluator does not support ${op}`);
        }
      }),
    );
    if (!conditionsHold) continue;
    if (s.Effect === "Deny") return "deny";
    allowed = true;
  }
  return allowed ? "allow" : "deny";
}
