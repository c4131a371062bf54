/**
 * The AWS variables fansync reads itself, beside the SDK's own credential and region chain: the
 * endpoints, the region (only to know whether one is set), the profile (for messages) and the CA
 * bundle of the lean data path. Read from the environment once, by the CLI's wiring
 * (commands/wiring.ts), and passed down to the clients: nothing below the commands reads
 * `process.env`.
 */

/** The AWS settings of the environment that fansync's own code looks at. */
export interface AwsEnv {
  /** AWS_ENDPOINT_URL: every service's endpoint unless a service has its own. */
  readonly endpointUrl: string | undefined;
  /** AWS_ENDPOINT_URL_<SERVICE> (S3, SQS, SNS, CLOUDFRONT), by service. */
  readonly serviceEndpoints: Readonly<Partial<Record<AwsService, string>>>;
  /** AWS_REGION, else AWS_DEFAULT_REGION. */
  readonly region: string | undefined;
  /** AWS_PROFILE. */
  readonly profile: string | undefined;
  /** AWS_CA_BUNDLE: a PEM file that replaces Node's CA store for HTTPS (as the AWS CLI reads it). */
  readonly caBundle: string | undefined;
}

/** The services whose endpoint may be set on its own. */
export type AwsService = "S3" | "SQS" | "SNS" | "CLOUDFRONT";

/** An environment without any AWS setting (tests, library use). */
export const NO_AWS_ENV: AwsEnv = Object.freeze({ endpointUrl: undefined, serviceEndpoints: Object.freeze({}), region: undefined, profile: undefined, caBundle: undefined });

/** The AWS settings of `env` (the process environment, as the CLI hands it over). Pure. */
export function parseAwsEnv(env: Readonly<Record<string, string | undefined>>): AwsEnv {
  const services: Partial<Record<AwsService, string>> = {};
  for (const s of ["S3", "SQS", "SNS", "CLOUDFRONT"] as const) {
    const v = env[`AWS_ENDPOINT_URL_${s}`];
    if (v !== undefined) services[s] = v;
  }
  return Object.freeze({ endpointUrl: env.AWS_ENDPOINT_URL, serviceEndpoints: Object.freeze(services), region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION, profile: env.AWS_PROFILE, caBundle: env.AWS_CA_BUNDLE });
}
