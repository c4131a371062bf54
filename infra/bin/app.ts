/** CDK app entry: reads the `fansync:*` context (cdk.json or -c) and adds the stacks. */
import { App } from "aws-cdk-lib";
import { parseInfraContext } from "../src/context.ts";
import { addFansyncStacks } from "../src/stacks.ts";

const app = new App();
const parsed = parseInfraContext((key) => app.node.tryGetContext(key));
if (!parsed.ok) {
  // Every problem at once, then a non-zero exit: `cdk synth` shows this output.
  console.error(`fansync infra: invalid context\n  ${parsed.errors.join("\n  ")}`);
  process.exitCode = 2;
} else {
  addFansyncStacks(app, parsed.config);
  app.synth();
}
