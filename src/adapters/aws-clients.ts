/**
 * SQS, SNS and CloudFront clients (events and CDN invalidation), built like the S3 client: region
 * and credentials from the standard AWS chain only, endpoints from the service's own variable first.
 */
import { CloudFrontClient } from "@aws-sdk/client-cloudfront";
import { SNSClient } from "@aws-sdk/client-sns";
import { SQSClient } from "@aws-sdk/client-sqs";
import { SDK_MAX_ATTEMPTS } from "./retry.ts";
import { type AwsEnv, NO_AWS_ENV } from "./aws-env.ts";

/** What every client here is built from. */
export interface AwsClientSettings {
  /** `--endpoint-url` (the S3 endpoint): used when the service has no endpoint variable of its own. */
  readonly endpointUrl: string | undefined;
  readonly profile: string | undefined;
  /** The AWS variables of the environment, as the CLI read them; none: as if unset. */
  readonly aws?: AwsEnv | undefined;
}

type Service = "SQS" | "SNS" | "CLOUDFRONT";

/**
 * The endpoint of `service`: AWS_ENDPOINT_URL_<SERVICE> first (a site whose S3 is elsewhere still
 * reaches AWS's SQS), then --endpoint-url (one local server serving everything, as moto does), then
 * AWS_ENDPOINT_URL; none: the service's AWS endpoint.
 */
export function endpointFor(service: Service, s: AwsClientSettings): string | undefined {
  const aws = s.aws ?? NO_AWS_ENV;
  return aws.serviceEndpoints[service] || s.endpointUrl || aws.endpointUrl || undefined;
}

/** The region written in an AWS queue or topic address (`sqs.eu-west-1.amazonaws.com`, `arn:aws:sns:eu-west-1:…`). */
export function regionOf(address: string | undefined): string | undefined {
  if (!address) return undefined;
  return /^https?:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com/.exec(address)?.[1]
    ?? /^https?:\/\/([a-z0-9-]+)\.queue\.amazonaws\.com/.exec(address)?.[1]
    ?? /^arn:aws[a-z-]*:sn[sq]:([a-z0-9-]+):/.exec(address)?.[1];
}

function common(service: Service, s: AwsClientSettings, address?: string): Record<string, unknown> {
  const endpoint = endpointFor(service, s);
  const regionFromEnv = s.aws?.region;
  // An address on AWS names its region; a local endpoint without any region configured: us-east-1.
  const region = regionOf(address) ?? (!regionFromEnv && !s.profile && !s.aws?.profile ? (endpoint || service === "CLOUDFRONT" ? "us-east-1" : undefined) : undefined);
  return { ...(endpoint ? { endpoint } : {}), ...(s.profile ? { profile: s.profile } : {}), ...(region ? { region } : {}), maxAttempts: SDK_MAX_ATTEMPTS };
}

/** An SQS client for the queue at `queueUrl`. */
export function createSqsClient(s: AwsClientSettings, queueUrl?: string): SQSClient {
  return new SQSClient(common("SQS", s, queueUrl));
}

/** An SNS client (for the topic `topicArn`, whose region it takes). */
export function createSnsClient(s: AwsClientSettings, topicArn?: string): SNSClient {
  return new SNSClient(common("SNS", s, topicArn));
}

/** A CloudFront client (a global service: us-east-1 unless configured). */
export function createCloudFrontClient(s: AwsClientSettings): CloudFrontClient {
  return new CloudFrontClient(common("CLOUDFRONT", s));
}
