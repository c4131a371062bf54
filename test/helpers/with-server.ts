/**
 * Run one command against one server started for it:
 *   node test/helpers/with-server.ts <moto|fauxqs|localstack|versitygw> -- <command> [args...]
 * The command gets S3_ENDPOINT, FANSYNC_TEST_SERVER=<kind> and the local test credentials; the
 * server stops when the command ends or this process is interrupted, and the command's exit code is
 * this one's. test/run.sh runs the whole integration suite against one LocalStack this way (it takes
 * seconds and half a GB to start, too much once per test file); that also keeps the suite's
 * S3_ENDPOINT mode, the one for a server of your own, exercised in CI.
 */
import { spawn } from "node:child_process";
import { freePort, KINDS, launch, testEnv } from "./s3-server.ts";

const [kind, sep, cmd, ...args] = process.argv.slice(2);
if (!kind || sep !== "--" || !cmd || !(KINDS as readonly string[]).includes(kind)) {
  process.stderr.write(`usage: node test/helpers/with-server.ts <${KINDS.join("|")}> -- <command> [args...]\n`);
  process.exit(64);
}
delete process.env.S3_ENDPOINT;
Object.assign(process.env, testEnv());
const started = Date.now();
const server = await launch(kind, await freePort());
process.stderr.write(`${kind} ready at ${server.endpoint} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
const child = spawn(cmd, args, {
  stdio: "inherit",
  env: { ...process.env, S3_ENDPOINT: server.endpoint, FANSYNC_TEST_SERVER: kind },
});
for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, () => child.kill(s));
const code = await new Promise<number>((resolve) => child.once("exit", (c, s) => resolve(c ?? (s === "SIGINT" ? 130 : 143))));
await server.stop();
process.exit(code);
