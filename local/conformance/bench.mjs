// Measures the local sandbox server through the npm SDK: create-to-ready latency, the round
// trip of `true`, and how many sandboxes can run at once.
// Usage (with DENO_SANDBOX_ENDPOINT, DENO_DEPLOY_ENDPOINT, DENO_DEPLOY_TOKEN set, e.g. by run.sh):
//   local/node_modules/.bin/node local/conformance/bench.mjs [creates=40] [execs=200] [concurrent=50]
import { Sandbox } from "@deno/sandbox";

const [creates = 40, execs = 200, concurrent = 50] = process.argv.slice(2).map(Number);

function percentile(samples, fraction) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

function summary(samples) {
  return `p50 ${percentile(samples, 0.5).toFixed(1)} ms, p95 ${percentile(samples, 0.95).toFixed(1)} ms (n=${samples.length})`;
}

// 1. Create to ready: until Sandbox.create resolves. The server sends the 101 response only after
//    the sandbox's agent has replied, so the sandbox accepts commands from then on.
const createTimes = [];
for (let i = 0; i < creates; i++) {
  const started = performance.now();
  const sandbox = await Sandbox.create();
  createTimes.push(performance.now() - started);
  await sandbox.close();
}
console.log(`create (Sandbox.create until connected): ${summary(createTimes)}`);

// 2. Round trip of `true` through spawn + processWait, as sandbox.spawn(...).status does.
{
  await using sandbox = await Sandbox.create();
  const spawnTimes = [];
  const shTimes = [];
  for (let i = 0; i < execs; i++) {
    let started = performance.now();
    const child = await sandbox.spawn("true", { stdout: "null", stderr: "null" });
    await child.status;
    spawnTimes.push(performance.now() - started);

    started = performance.now();
    await sandbox.sh`true`;
    shTimes.push(performance.now() - started);
  }
  console.log(`exec "true" (spawn + status): ${summary(spawnTimes)}`);
  console.log(`exec sh\`true\` (bash -c, piped output): ${summary(shTimes)}`);
}

// 3. Concurrent sandboxes: all created at once, each runs a command, then all are closed.
{
  const started = performance.now();
  const sandboxes = await Promise.all(Array.from({ length: concurrent }, () => Sandbox.create({ timeout: "2m" })));
  const outputs = await Promise.all(sandboxes.map((sandbox) => sandbox.sh`echo $$`.text()));
  const elapsed = performance.now() - started;
  const ok = outputs.filter((text) => /^\d+\n$/.test(text)).length;
  console.log(`concurrent: ${ok}/${concurrent} sandboxes running and answering, all created in ${elapsed.toFixed(0)} ms`);
  await Promise.all(sandboxes.map((sandbox) => sandbox.kill()));
}
