/**
 * A bucket hardened the same way wherever fansync keeps a copy: versioned, SSE-S3, no public
 * access, no ACLs, TLS only, with lifecycle rules that keep versioning from growing without bound.
 */
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import type { IRole } from "aws-cdk-lib/aws-iam";
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership, type LifecycleRule, type ReplicationRule } from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";

/** What differs between fansync buckets; everything else is fixed hardening. */
export type FansyncBucketProps = {
  readonly bucketName: string;
  readonly prefix: string;
  readonly metaPrefix: string;
  readonly noncurrentMetaDays: number;
  readonly abortMultipartDays: number;
  readonly noncurrentContentDays?: number | undefined;
  /** Native replication (primary bucket only); the role must already hold crrRolePolicy. */
  readonly replication?: { readonly role: IRole; readonly rules: readonly ReplicationRule[] } | undefined;
};

/** A versioned, encrypted, private, TLS-only bucket with fansync's lifecycle rules. */
export class FansyncBucket extends Construct {
  /** The underlying bucket. */
  readonly bucket: Bucket;

  constructor(scope: Construct, id: string, props: FansyncBucketProps) {
    super(scope, id);
    const lifecycleRules: LifecycleRule[] = [
      // Pruned manifests and journals leave noncurrent versions (and, once those expire, bare
      // delete markers) behind; a head always names a current object, so only the old ones go.
      {
        id: "expire-noncurrent-meta",
        prefix: props.metaPrefix,
        noncurrentVersionExpiration: Duration.days(props.noncurrentMetaDays),
        expiredObjectDeleteMarker: true,
      },
      // An uploader killed mid-multipart leaves parts that are billed but invisible.
      { id: "abort-incomplete-multipart", abortIncompleteMultipartUploadAfter: Duration.days(props.abortMultipartDays) },
    ];
    if (props.noncurrentContentDays !== undefined) {
      lifecycleRules.push({ id: "expire-noncurrent-content", prefix: props.prefix, noncurrentVersionExpiration: Duration.days(props.noncurrentContentDays) });
    }
    this.bucket = new Bucket(this, "Bucket", {
      bucketName: props.bucketName,
      // Versioning lets readers fetch exactly the version a manifest names while the master
      // moves on, and is a precondition of Cross-Region Replication.
      versioned: true,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules,
      // A stack deletion must never take a site's content with it.
      removalPolicy: RemovalPolicy.RETAIN,
      ...(props.replication ? { replicationRole: props.replication.role, replicationRules: [...props.replication.rules] } : {}),
    });
  }
}
