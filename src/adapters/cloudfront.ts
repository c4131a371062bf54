/** CloudFront invalidations: the two calls the CDN invalidator needs, behind a narrow interface. */
import { type CloudFrontClient, CreateInvalidationCommand, GetInvalidationCommand } from "@aws-sdk/client-cloudfront";

/** What the invalidator needs of a CDN (an in-memory twin in the unit tests). */
export interface CdnApi {
  /** Create an invalidation; `reference` makes a retried request the same invalidation. Returns its id. */
  create(distributionId: string, paths: readonly string[], reference: string, signal: AbortSignal): Promise<string>;
  /** Whether an invalidation is still in progress. */
  inProgress(distributionId: string, invalidationId: string, signal: AbortSignal): Promise<boolean>;
}

/** {@link CdnApi} on CloudFront. */
export class CloudFrontApi implements CdnApi {
  private readonly client: CloudFrontClient;

  constructor(client: CloudFrontClient) {
    this.client = client;
  }

  async create(distributionId: string, paths: readonly string[], reference: string, signal: AbortSignal): Promise<string> {
    const out = await this.client.send(new CreateInvalidationCommand({
      DistributionId: distributionId,
      InvalidationBatch: { CallerReference: reference, Paths: { Quantity: paths.length, Items: [...paths] } },
    }), { abortSignal: signal });
    return out.Invalidation?.Id ?? "";
  }

  async inProgress(distributionId: string, invalidationId: string, signal: AbortSignal): Promise<boolean> {
    const out = await this.client.send(new GetInvalidationCommand({ DistributionId: distributionId, Id: invalidationId }), { abortSignal: signal });
    return out.Invalidation?.Status !== "Completed" && out.Invalidation?.Status !== "COMPLETED";
  }
}
