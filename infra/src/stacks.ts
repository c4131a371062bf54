/**
 * The fansync deployment: one stack per regional bucket (in its region) and a primary stack with
 * the primary bucket, the optional native replication, the managed policies and outputs.
 * Cross-stack wiring is by bucket *name* only (names are parameters), so stacks in different
 * regions need no cross-region references, only a deployment order.
 */
import { CfnOutput, Stack, type App, type StackProps } from "aws-cdk-lib";
import { ManagedPolicy, PolicyDocument, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Bucket, type ReplicationRule } from "aws-cdk-lib/aws-s3";
import type { Construct } from "constructs";
import { locationOf, type BucketSpec, type InfraConfig } from "./context.ts";
import { FansyncBucket } from "./fansync-bucket.ts";
import { FansyncCdn } from "./fansync-cdn.ts";
import { crrRolePolicy, invalidateStatement, pullerPolicy, receiveEventsStatement, replicatorPolicy, selfRegisterStatements, uploaderPolicy, withStatements, type FansyncRole, type PolicyDocumentJson } from "./policies.ts";
import { FansyncEvents } from "./fansync-events.ts";

/** The policy document of each role for a deployment: what the stacks attach and infra/iam/ holds. */
export function rolePolicies(config: InfraConfig): Record<FansyncRole, PolicyDocumentJson> {
  const primary = locationOf(config, config.primary.bucketName);
  const regional = config.regional.map((r) => locationOf(config, r.bucketName));
  const events = config.eventGroups.length > 0;
  // Writers in front of a CDN invalidate it after each generation (docs/events.md).
  const cdn = config.cloudFrontBucket !== undefined ? [invalidateStatement(config.partition)] : [];
  return {
    uploader: withStatements(uploaderPolicy(primary, config.partition), cdn),
    replicator: withStatements(replicatorPolicy(primary, regional, config.partition), [...(events ? [receiveEventsStatement(config.namePrefix, config.partition)] : []), ...cdn]),
    // A node reads its regional bucket first and falls back to the primary; content is the same
    // everywhere, so one read-only policy over all of them keeps the deployment simple. Narrow it
    // per node with infra/scripts/write-iam.ts if a region must not read another's bucket.
    puller: withStatements(pullerPolicy([...regional, primary], config.partition, config.nodeIdVariable), events ? [receiveEventsStatement(config.namePrefix, config.partition), ...selfRegisterStatements(config.namePrefix, config.partition)] : []),
  };
}

/** Stack names are derived from bucket names, which may contain dots. */
function stackName(config: InfraConfig, suffix: string): string {
  return `${config.namePrefix}-${suffix}`.replace(/[^A-Za-z0-9-]/g, "-");
}

function bucketProps(config: InfraConfig, spec: BucketSpec) {
  return {
    bucketName: spec.bucketName,
    prefix: config.prefix,
    metaPrefix: config.metaPrefix,
    noncurrentMetaDays: config.noncurrentMetaDays,
    abortMultipartDays: config.abortMultipartDays,
    noncurrentContentDays: config.noncurrentContentDays,
  };
}

/** Props shared by both stack kinds. */
export type FansyncStackProps = StackProps & { readonly config: InfraConfig; readonly spec: BucketSpec };

/** A regional bucket, hardened like the primary, optionally behind CloudFront. */
export class RegionalStack extends Stack {
  /** The regional bucket. */
  readonly bucket: Bucket;

  constructor(scope: Construct, id: string, props: FansyncStackProps) {
    super(scope, id, props);
    const { config, spec } = props;
    this.bucket = new FansyncBucket(this, "Regional", bucketProps(config, spec)).bucket;
    new CfnOutput(this, "BucketName", { value: this.bucket.bucketName });
    if (config.cloudFrontBucket === spec.bucketName) addCdn(this, config, this.bucket, spec);
    addEvents(this, config, this.bucket, spec, []);
  }
}

/** The primary bucket, native replication (optional), the managed policies and the CDN (optional). */
export class PrimaryStack extends Stack {
  /** The primary bucket. */
  readonly bucket: Bucket;
  /** Managed policy per requested role. */
  readonly policies: Partial<Record<FansyncRole, ManagedPolicy>> = {};

  constructor(scope: Construct, id: string, props: FansyncStackProps) {
    super(scope, id, props);
    const { config, spec } = props;
    const primary = locationOf(config, spec.bucketName);
    const targets = config.regional.map((r) => locationOf(config, r.bucketName));

    let replication: { role: Role; rules: ReplicationRule[] } | undefined;
    if (config.crr) {
      const role = new Role(this, "ReplicationRole", {
        assumedBy: new ServicePrincipal("s3.amazonaws.com"),
        description: "S3 Cross-Region Replication of fansync content from the primary bucket",
        inlinePolicies: { replication: PolicyDocument.fromJson(crrRolePolicy(primary, targets, config.partition)) },
      });
      // Filter on the content prefix, which holds the meta prefix in the default layout; a meta
      // prefix configured elsewhere needs rules of its own or readers would never see a head.
      const filters = [config.prefix];
      if (!config.metaPrefix.startsWith(config.prefix)) filters.push(config.metaPrefix);
      const rules: ReplicationRule[] = [];
      config.regional.forEach((r, i) => {
        const destination = Bucket.fromBucketAttributes(this, `Destination${i}`, { bucketName: r.bucketName, region: r.region });
        filters.forEach((prefix, j) => {
          rules.push({
            id: `fansync-to-${r.bucketName}${j === 0 ? "" : "-meta"}`.slice(0, 255),
            destination,
            priority: rules.length + 1,
            filter: { prefix },
            // Deletes must reach the regional copy too, or a CDN on it keeps serving removed pages.
            deleteMarkerReplication: true,
          });
        });
      });
      replication = { role, rules };
    }

    this.bucket = new FansyncBucket(this, "Primary", { ...bucketProps(config, spec), replication }).bucket;
    new CfnOutput(this, "BucketName", { value: this.bucket.bucketName });

    const documents = rolePolicies(config);
    for (const role of config.roles) {
      const policy = new ManagedPolicy(this, `${role[0]?.toUpperCase()}${role.slice(1)}Policy`, {
        managedPolicyName: `${config.namePrefix}-${role}`,
        description: `fansync ${role}: least privilege on ${config.prefix === "" ? "the whole bucket" : config.prefix}`,
        document: PolicyDocument.fromJson(documents[role]),
      });
      this.policies[role] = policy;
      new CfnOutput(this, `${role}PolicyArn`, { value: policy.managedPolicyArn });
    }
    if (config.cloudFrontBucket === spec.bucketName) addCdn(this, config, this.bucket, spec);
    // The replicator is woken by the primary's head like any node group.
    addEvents(this, config, this.bucket, spec, config.regional.length > 0 ? ["replicator"] : []);
  }
}

/** Events: the bucket's head topic and one queue per node group (and the replicator's on the primary). */
function addEvents(stack: Stack, config: InfraConfig, bucket: Bucket, spec: BucketSpec, extra: readonly string[]): void {
  if (config.eventGroups.length === 0) return;
  const events = new FansyncEvents(stack, "Events", { bucket, location: locationOf(config, spec.bucketName), namePrefix: config.namePrefix, groups: [...config.eventGroups, ...extra] });
  for (const [group, queue] of events.queues) new CfnOutput(stack, `EventQueue${group.replace(/[^A-Za-z0-9]/g, "")}`, { value: queue.queueUrl, description: `pull --events for node group ${group}` });
  new CfnOutput(stack, "HeadTopicArn", { value: events.topic.topicArn, description: "fansync events register --topic" });
}

function addCdn(stack: Stack, config: InfraConfig, bucket: Bucket, spec: BucketSpec): void {
  const cdn = new FansyncCdn(stack, "Cdn", { bucket, location: locationOf(config, spec.bucketName), partition: config.partition });
  new CfnOutput(stack, "DistributionDomainName", { value: cdn.distribution.distributionDomainName });
}

/** Add every fansync stack for `config` to `app`; regional stacks deploy before the primary. */
export function addFansyncStacks(app: App, config: InfraConfig): { primary: PrimaryStack; regional: RegionalStack[] } {
  const env = (region: string) => (config.account ? { account: config.account, region } : { region });
  const regional = config.regional.map(
    (spec) => new RegionalStack(app, stackName(config, `regional-${spec.bucketName}`), { config, spec, env: env(spec.region) }),
  );
  const primary = new PrimaryStack(app, stackName(config, "primary"), { config, spec: config.primary, env: env(config.primary.region) });
  // CRR refuses a destination that does not exist yet (or is unversioned).
  for (const r of regional) primary.addStackDependency(r);
  return { primary, regional };
}
