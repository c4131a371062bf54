/**
 * An optional CloudFront distribution in front of one fansync bucket, through Origin Access
 * Control, that never serves the meta prefix. Two layers, because either alone has a gap:
 * - a bucket-policy Deny for the CloudFront principal on the meta prefix (and outside the content
 *   prefix): decisive whatever path encoding a viewer tries, since S3 judges the decoded key;
 * - a CloudFront Function that answers 403 at the edge, so such requests never reach (or get
 *   cached from) the origin and the answer does not depend on the origin's error handling.
 */
import {
  AllowedMethods, CachePolicy, Distribution, Function as CloudFrontFunction, FunctionCode, FunctionEventType,
  FunctionRuntime, ViewerProtocolPolicy,
} from "aws-cdk-lib/aws-cloudfront";
import { S3BucketOrigin } from "aws-cdk-lib/aws-cloudfront-origins";
import { PolicyStatement } from "aws-cdk-lib/aws-iam";
import type { Bucket } from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";
import { cloudFrontDenyStatements, type BucketLocation } from "./policies.ts";

/** Where the distribution points and which partition the bucket ARN uses. */
export type FansyncCdnProps = { readonly bucket: Bucket; readonly location: BucketLocation; readonly partition: string };

/**
 * The viewer path under which the meta prefix would appear, or undefined when the meta prefix
 * lies outside the content prefix (then the origin path already makes it unreachable).
 */
export function metaViewerPath(location: BucketLocation): string | undefined {
  return location.metaPrefix.startsWith(location.prefix) ? `/${location.metaPrefix.slice(location.prefix.length)}` : undefined;
}

/**
 * Source of the viewer-request function (cloudfront-js-2.0, plain ES5-ish JavaScript). It decodes
 * the URI first so `/%2Efansync/...` is caught like `/.fansync/...`; an undecodable URI is refused.
 */
export function denyMetaFunctionCode(viewerPath: string): string {
  return [
    `var META = ${JSON.stringify(viewerPath)};`,
    "function handler(event) {",
    "  var uri = event.request.uri;",
    "  var decoded;",
    "  try { decoded = decodeURIComponent(uri); } catch (e) { return deny(); }",
    "  if (decoded.indexOf(META) === 0 || decoded + '/' === META) { return deny(); }",
    "  return event.request;",
    "}",
    "function deny() {",
    "  return { statusCode: 403, statusDescription: 'Forbidden' };",
    "}",
    "",
  ].join("\n");
}

/** CloudFront distribution with OAC on a fansync bucket, meta prefix unserved. */
export class FansyncCdn extends Construct {
  /** The distribution. */
  readonly distribution: Distribution;

  constructor(scope: Construct, id: string, props: FansyncCdnProps) {
    super(scope, id);
    const { location } = props;
    // The origin path maps viewer "/x" to key "<prefix>x"; CloudFront wants it without the
    // trailing slash.
    const originPath = location.prefix === "" ? undefined : `/${location.prefix.slice(0, -1)}`;
    const origin = S3BucketOrigin.withOriginAccessControl(props.bucket, originPath ? { originPath } : {});
    for (const statement of cloudFrontDenyStatements(location, props.partition)) {
      props.bucket.addToResourcePolicy(PolicyStatement.fromJson(statement));
    }
    const viewerPath = metaViewerPath(location);
    const denyMeta = viewerPath
      ? new CloudFrontFunction(this, "DenyMeta", {
          code: FunctionCode.fromInline(denyMetaFunctionCode(viewerPath)),
          runtime: FunctionRuntime.JS_2_0,
          comment: `403 for the fansync meta prefix ${viewerPath}`,
        })
      : undefined;
    const functionAssociations = denyMeta ? [{ function: denyMeta, eventType: FunctionEventType.VIEWER_REQUEST }] : [];
    this.distribution = new Distribution(this, "Distribution", {
      comment: `fansync ${location.bucket}/${location.prefix}`,
      defaultRootObject: "index.html",
      defaultBehavior: {
        origin,
        viewerProtocolPolicy: ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        allowedMethods: AllowedMethods.ALLOW_GET_HEAD,
        cachePolicy: CachePolicy.CACHING_OPTIMIZED,
        functionAssociations,
      },
      // A dedicated behaviour makes the rule visible in the console and answers without caching.
      ...(viewerPath && denyMeta
        ? {
            additionalBehaviors: {
              [`${viewerPath}*`]: {
                origin,
                viewerProtocolPolicy: ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowedMethods: AllowedMethods.ALLOW_GET_HEAD,
                cachePolicy: CachePolicy.CACHING_DISABLED,
                functionAssociations,
              },
            },
          }
        : {}),
    });
  }
}
