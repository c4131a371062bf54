// Runs fauxqs in its own process so its CPU and memory are not charged to whatever is measured.
// Prints one JSON line {"port": N} once listening; exits on SIGTERM or when stdin closes.
import { startFauxqs } from "fauxqs";

const server = await startFauxqs({ host: "127.0.0.1", port: 0, logger: false });
for (const name of process.argv.slice(2)) server.createBucket(name);
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);

let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
// The parent holds our stdin: if it dies without killing us, stdin ends and we go too.
process.stdin.on("end", () => void stop());
process.stdin.resume();
