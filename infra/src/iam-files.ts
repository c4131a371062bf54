/**
 * The committed plain-JSON policies in infra/iam/: what they contain (pure), for the generator
 * script and for the test that checks the committed files and the CDK templates agree with it.
 */
import { parseInfraContext, type InfraConfig } from "./context.ts";
import { FANSYNC_ROLES } from "./policies.ts";
import { rolePolicies } from "./stacks.ts";

/** Placeholder names in infra/iam/*.json; infra/iam/README.md tells what to replace them with. */
export const IAM_PLACEHOLDERS = {
  primaryBucket: "example-primary-bucket",
  regionalBucket: "example-regional-bucket",
  prefix: "example-prefix/",
} as const;

/** The deployment the committed JSON files describe: one primary, one regional, default meta prefix. */
export function placeholderConfig(): InfraConfig {
  const context: Record<string, unknown> = {
    "fansync:primaryBucket": IAM_PLACEHOLDERS.primaryBucket,
    "fansync:primaryRegion": "eu-west-1",
    "fansync:regionalBuckets": [`${IAM_PLACEHOLDERS.regionalBucket}@us-east-1`],
    "fansync:prefix": IAM_PLACEHOLDERS.prefix,
  };
  const parsed = parseInfraContext((k) => context[k]);
  if (!parsed.ok) throw new Error(`placeholder config is invalid: ${parsed.errors.join("; ")}`);
  return parsed.config;
}

/** File name → exact file content (2-space JSON plus a final newline) for every role. */
export function planIamFiles(config: InfraConfig = placeholderConfig()): Map<string, string> {
  const documents = rolePolicies(config);
  return new Map(FANSYNC_ROLES.map((role) => [`${role}.json`, `${JSON.stringify(documents[role], null, 2)}\n`]));
}
