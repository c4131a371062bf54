/**
 * The ObjectStore contract (test/helpers/object-store-contract.ts) on a real server through S3Store:
 * the same cases the MemoryStore passes in test/unit, so the twin is checked against the wire.
 */
import { createS3Client } from "../../src/adapters/s3-client.ts";
import { S3Store } from "../../src/adapters/s3-store.ts";
import { useServer } from "../helpers/ctx.ts";
import { objectStoreContract } from "../helpers/object-store-contract.ts";

const ctx = useServer();
// The server's kind decides what it enforces (S3-SERVERS.md); known before the server starts.
const kind = process.env.FANSYNC_TEST_SERVER ?? "moto";
objectStoreContract(`S3Store on ${kind}`, {
  make: async ({ versioned }) => {
    const bucket = await ctx.server.bucket("contract", { versioning: versioned });
    const client = createS3Client({ endpointUrl: ctx.server.endpoint, pathStyle: true, profile: undefined, maxSockets: 8 });
    return new S3Store({ client, bucket, endpoint: ctx.server.endpoint });
  },
  conditionalWrites: kind !== "fauxqs",
  versioning: kind !== "fauxqs",
  copySourceIfMatch: kind !== "moto" && kind !== "fauxqs",
  byteOrderListing: kind !== "fauxqs",
});
