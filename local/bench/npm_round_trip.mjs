// Times one tool call's worth of work through Deno's npm SDK against a running sandbox: open a
// connection, run `bash -lc true` with both streams piped, wait for the exit status, close.
// The Rust benchmark harness runs this and compares it with its own client and the handlers.
// Usage (DENO_SANDBOX_ENDPOINT and DENO_DEPLOY_TOKEN set):
//   local/node_modules/.bin/node local/bench/npm_round_trip.mjs SANDBOX_ID ITERATIONS
// Prints one JSON line: {"samples_ms": [...]}.
import { Sandbox } from "@deno/sandbox";

const [sandboxId, iterationsText = "100"] = process.argv.slice(2);
if (!sandboxId) {
  console.error("usage: npm_round_trip.mjs SANDBOX_ID ITERATIONS");
  process.exit(2);
}
const iterations = Number(iterationsText);

async function once() {
  const started = performance.now();
  const sandbox = await Sandbox.connect({ id: sandboxId });
  const child = await sandbox.spawn("bash", { args: ["-lc", "true"], stdout: "piped", stderr: "piped" });
  const { status } = await child.output();
  await sandbox.close();
  if (!status.success) {
    throw new Error(`bash -lc true exited with ${status.code}`);
  }
  return performance.now() - started;
}

// Warm up the module graph, the JIT and the server's caches as the Rust side does.
for (let i = 0; i < 5; i++) {
  await once();
}
const samples = [];
for (let i = 0; i < iterations; i++) {
  samples.push(await once());
}
console.log(JSON.stringify({ samples_ms: samples }));
