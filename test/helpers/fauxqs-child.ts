/** Runs a fauxqs S3 server in its own process (so a busy test process never stalls it). Prints "PORT <n>". */
import { startFauxqs } from "fauxqs";

const server = await startFauxqs({ host: "127.0.0.1", port: Number(process.env.PORT ?? 0), logger: false });
process.stdout.write(`PORT ${server.port}\n`);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
