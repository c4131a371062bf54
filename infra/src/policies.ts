/**
 * The single source of truth for every IAM document fansync needs. Pure: plain JSON objects that
 * the CDK stacks feed to `PolicyDocument.fromJson` and the generator script writes to infra/iam/,
 * so the two can never drift (a test compares them).
 *
 * ARNs are built from bucket *names*, not CDK tokens: names are explicit parameters anyway (S3
 * names are global), and literal ARNs keep the JSON files readable and comparable.
 */

/** A bucket plus the key prefix fansync owns in it and the reserved meta prefix for control objects. */
export type BucketLocation = {
  readonly bucket: string;
  /** "" (whole bucket) or a key prefix ending in "/". */
  readonly prefix: string;
  /** Where head.json, manifests/ and journal/ live; by default `${prefix}.fansync/`. */
  readonly metaPrefix: string;
};

/** The condition block of an IAM statement: operator → condition key → values. */
export type ConditionJson = Readonly<Record<string, Readonly<Record<string, readonly string[]>>>>;

/** One IAM statement in the JSON shape IAM and `PolicyStatement.fromJson` accept. */
export type StatementJson = {
  readonly Sid: string;
  readonly Effect: "Allow" | "Deny";
  readonly Principal?: { readonly Service: string };
  readonly Action: readonly string[];
  readonly Resource?: readonly string[];
  readonly NotResource?: readonly string[];
  readonly Condition?: ConditionJson;
};

/** A complete IAM policy document. */
export type PolicyDocumentJson = {
  readonly Version: "2012-10-17";
  readonly Statement: readonly StatementJson[];
};

/** The roles a deployment can give a principal; one managed policy each. */
export type FansyncRole = "uploader" | "replicator" | "puller";

/** Every role, in the order the generator and the stacks emit them. */
export const FANSYNC_ROLES: readonly FansyncRole[] = ["uploader", "replicator", "puller"];

/** `arn:<partition>:s3:::<bucket>`: the bucket itself (ListBucket and bucket-level actions). */
export function bucketArn(bucket: string, partition = "aws"): string {
  return `arn:${partition}:s3:::${bucket}`;
}

/**
 * Object ARNs for a location: the content prefix and the meta prefix, both listed explicitly.
 * With the default layout the meta prefix lies inside the content prefix and the second ARN is
 * redundant; it is kept so the policy stays right when metaPrefix is configured elsewhere, and so
 * an auditor sees at a glance that the control objects are covered.
 */
export function objectArns(loc: BucketLocation, partition = "aws"): string[] {
  const arns = [`${bucketArn(loc.bucket, partition)}/${loc.prefix}*`, `${bucketArn(loc.bucket, partition)}/${loc.metaPrefix}*`];
  return [...new Set(arns)];
}

// ListBucket is a bucket-level action: the only way to confine it to a prefix is the s3:prefix
// condition. A request without a prefix parameter does not match StringLike, so with a prefix set
// a principal can list only below it. With prefix "" the whole bucket is fansync's, and a
// condition would only break unprefixed listings, so it is left out.
function listStatement(sid: string, loc: BucketLocation, partition: string): StatementJson {
  const statement: StatementJson = { Sid: sid, Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn(loc.bucket, partition)] };
  if (loc.prefix === "") return statement;
  const prefixes = [...new Set([`${loc.prefix}*`, `${loc.metaPrefix}*`])];
  return { ...statement, Condition: { StringLike: { "s3:prefix": prefixes } } };
}

// Sids must be alphanumeric; a running index keeps them unique per bucket.
function sid(base: string, index: number, count: number): string {
  return count === 1 ? base : `${base}${index}`;
}

/** Object-level actions the uploader needs: write, read back, delete, and clean up multipart uploads. */
const UPLOADER_OBJECT_ACTIONS = [
  "s3:PutObject",
  "s3:GetObject",
  "s3:GetObjectVersion",
  "s3:DeleteObject",
  "s3:AbortMultipartUpload",
  "s3:ListMultipartUploadParts",
];

/** Read-only object actions: a current object or a named version (manifests pin VersionIds). */
const READ_OBJECT_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"];

/** Uploader (master): write its prefix and meta prefix, list only below them. */
export function uploaderPolicy(target: BucketLocation, partition = "aws"): PolicyDocumentJson {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "WriteContentAndMeta", Effect: "Allow", Action: UPLOADER_OBJECT_ACTIONS, Resource: objectArns(target, partition) },
      listStatement("ListPrefix", target, partition),
    ],
  };
}

/**
 * Replicator: read the primary prefix, write each regional prefix. It reads the regional head
 * (to resume) and deletes objects a generation removed, so targets get the uploader's object
 * actions; the source gets reads only, so a compromised replicator cannot alter the master copy.
 */
export function replicatorPolicy(source: BucketLocation, targets: readonly BucketLocation[], partition = "aws"): PolicyDocumentJson {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadSource", Effect: "Allow", Action: READ_OBJECT_ACTIONS, Resource: objectArns(source, partition) },
      listStatement("ListSource", source, partition),
      { Sid: "WriteTargets", Effect: "Allow", Action: UPLOADER_OBJECT_ACTIONS, Resource: targets.flatMap((t) => objectArns(t, partition)) },
      ...targets.map((t, i) => listStatement(sid("ListTarget", i, targets.length), t, partition)),
    ],
  };
}

/**
 * The keys of node reports (`pull --report`) below a location's meta prefix: `nodes/<node-id>.json`.
 * With `nodeIdVariable` (an IAM policy variable such as `${aws:PrincipalTag/fansync-node}` or
 * `${aws:username}`) each principal may write its own report key alone; without it, any report key.
 */
export function nodeReportArns(loc: BucketLocation, partition = "aws", nodeIdVariable?: string): string[] {
  return [`${bucketArn(loc.bucket, partition)}/${loc.metaPrefix}nodes/${nodeIdVariable ?? "*"}.json`];
}

/**
 * Puller (web node): GetObject and GetObjectVersion on its sources, so a compromised web node
 * cannot write or delete content; its only write is PutObject on its node report key (advisory
 * status, never read by other pullers). No ListBucket: a puller never lists (head →
 * manifest/journal → objects). Note that without ListBucket S3 answers 403, not 404, for a missing
 * key; the puller must treat both as "not there yet".
 */
export function pullerPolicy(sources: readonly BucketLocation[], partition = "aws", nodeIdVariable?: string): PolicyDocumentJson {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadContent", Effect: "Allow", Action: READ_OBJECT_ACTIONS, Resource: sources.flatMap((s) => objectArns(s, partition)) },
      { Sid: "WriteOwnNodeReport", Effect: "Allow", Action: ["s3:PutObject"], Resource: sources.flatMap((s) => nodeReportArns(s, partition, nodeIdVariable)) },
    ],
  };
}

/**
 * Events (docs/events.md): the queues of a deployment are named `<namePrefix>-…`; a node or the
 * replicator long-polls its queue and deletes what it took, nothing else. Messages are hints, so
 * reading any of the deployment's queues grants nothing a node could not learn from the head.
 */
export function eventQueueArns(namePrefix: string, partition = "aws"): string[] {
  return [`arn:${partition}:sqs:*:*:${namePrefix}-*`];
}

/**
 * The statement that lets a daemon with `--events` read its queue, and its tags (a self-registered
 * queue's expiry, which the node pushes forward; a queue without one is left as it is).
 */
export function receiveEventsStatement(namePrefix: string, partition = "aws"): StatementJson {
  return { Sid: "ReceiveEvents", Effect: "Allow", Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ListQueueTags"], Resource: eventQueueArns(namePrefix, partition) };
}

/**
 * Self-registration (`fansync events register` / `unregister` / `prune` on the node): its own queue, named
 * `<namePrefix>-…`, subscribed to the deployment's head topics; the queue policy it sets lets only
 * the topic send to it.
 */
export function selfRegisterStatements(namePrefix: string, partition = "aws"): StatementJson[] {
  return [
    {
      Sid: "OwnEventQueue",
      Effect: "Allow",
      // TagQueue also pushes the queue's expiry forward while the node runs; GetQueueUrl is for
      // `events prune` (from a subscription's queue ARN to the queue).
      Action: ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:TagQueue", "sqs:ListQueueTags", "sqs:DeleteQueue", "sqs:GetQueueUrl"],
      Resource: eventQueueArns(namePrefix, partition),
    },
    { Sid: "SubscribeToHeadTopics", Effect: "Allow", Action: ["sns:Subscribe", "sns:Unsubscribe", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"], Resource: [`arn:${partition}:sns:*:*:${namePrefix}-*`] },
  ];
}

/** Writers that invalidate the CDN after each generation (`--cloudfront-distribution`). */
export function invalidateStatement(partition = "aws"): StatementJson {
  return { Sid: "InvalidateCdn", Effect: "Allow", Action: ["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation"], Resource: [`arn:${partition}:cloudfront::*:distribution/*`] };
}

/** `policy` with `extra` statements appended (events, CDN), unchanged when there are none. */
export function withStatements(policy: PolicyDocumentJson, extra: readonly StatementJson[]): PolicyDocumentJson {
  return extra.length === 0 ? policy : { ...policy, Statement: [...policy.Statement, ...extra] };
}

/**
 * The role S3 Cross-Region Replication assumes (trusting s3.amazonaws.com): the permissions AWS
 * documents for CRR, confined to fansync's prefixes.
 */
export function crrRolePolicy(source: BucketLocation, targets: readonly BucketLocation[], partition = "aws"): PolicyDocumentJson {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadReplicationConfiguration", Effect: "Allow", Action: ["s3:GetReplicationConfiguration", "s3:ListBucket"], Resource: [bucketArn(source.bucket, partition)] },
      {
        Sid: "ReadSourceVersions",
        Effect: "Allow",
        Action: ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
        Resource: objectArns(source, partition),
      },
      {
        Sid: "ReplicateToTargets",
        Effect: "Allow",
        Action: ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
        Resource: targets.flatMap((t) => objectArns(t, partition)),
      },
    ],
  };
}

/**
 * Bucket-policy statements that keep CloudFront (Origin Access Control signs as the
 * cloudfront.amazonaws.com service principal) away from everything but content: an explicit Deny
 * beats the Allow that OAC adds for `bucket/*`, whatever path or encoding a viewer tries.
 */
export function cloudFrontDenyStatements(loc: BucketLocation, partition = "aws"): StatementJson[] {
  const principal = { Service: "cloudfront.amazonaws.com" };
  const base = bucketArn(loc.bucket, partition);
  const statements: StatementJson[] = [
    { Sid: "DenyCloudFrontMeta", Effect: "Deny", Principal: principal, Action: ["s3:GetObject"], Resource: [`${base}/${loc.metaPrefix}*`] },
  ];
  // Other prefixes of a shared bucket (another site, backups) are not this distribution's either.
  if (loc.prefix !== "") {
    statements.push({ Sid: "DenyCloudFrontOutsidePrefix", Effect: "Deny", Principal: principal, Action: ["s3:GetObject"], NotResource: [`${base}/${loc.prefix}*`] });
  }
  return statements;
}
