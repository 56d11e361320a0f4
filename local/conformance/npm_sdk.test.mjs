// Runs Deno's npm SDK (@deno/sandbox) against the local sandbox server.
// Needs DENO_SANDBOX_ENDPOINT, DENO_DEPLOY_ENDPOINT and DENO_DEPLOY_TOKEN (local/conformance/run.sh sets them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, InvalidTokenError, Sandbox, SandboxCommandError } from "@deno/sandbox";

const token = process.env.DENO_DEPLOY_TOKEN;

// The npm builder's setters do not accumulate (each starts from the default state), so every
// command below sets exactly one option.
test("create and sh report stdout, stderr and exit code", async () => {
  await using sandbox = await Sandbox.create({ timeout: "2m" });
  assert.match(sandbox.id, /^sbx_ord_[0-9a-hjkmnp-tv-z]{20}$/);

  assert.equal(await sandbox.sh`echo out; echo ignored >&2`.text(), "out\n");
  assert.equal(await sandbox.sh`pwd`.text(), "/home/app\n");

  const failure = await sandbox.sh`echo out; echo err-text >&2; exit 3`.stderr("piped").then(
    () => assert.fail("a failing command must reject"),
    (error) => error,
  );
  assert.ok(failure instanceof SandboxCommandError);
  assert.equal(failure.code, 3);
  assert.match(failure.message, /exit code 3/);
  assert.match(failure.message, /err-text/);

  const result = await sandbox.sh`exit 5`.noThrow();
  assert.equal(result.status.code, 5);
  assert.equal(result.status.success, false);

  const child = await sandbox.spawn("bash", { args: ["-c", "echo to-out; echo to-err >&2"], stdout: "piped", stderr: "piped" });
  const output = await child.output();
  assert.equal(output.stdoutText, "to-out\n");
  assert.equal(output.stderrText, "to-err\n");
  assert.equal(output.status.code, 0);
});

test("abort kills a running command", async () => {
  await using sandbox = await Sandbox.create();
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(), 300);
  const failure = await sandbox.sh`sleep 30`.signal(controller.signal).then(
    () => assert.fail("an aborted command must reject"),
    (error) => error,
  );
  assert.ok(failure instanceof SandboxCommandError);
  assert.equal(failure.code, 143);
  assert.ok(Date.now() - started < 10_000, "the command was not killed promptly");

  const child = await sandbox.spawn("sleep", { args: ["30"], stdout: "piped", stderr: "piped" });
  await child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.code, 137);
  assert.equal(status.signal, "SIGKILL");
});

test("files: write, read, readDir, stat, remove", async () => {
  await using sandbox = await Sandbox.create();
  await sandbox.fs.mkdir("dir");
  await sandbox.fs.writeTextFile("dir/note.txt", "hello sandbox");
  await sandbox.fs.writeFile("/tmp/bytes.bin", new Uint8Array([0, 1, 2, 255]));

  assert.equal(await sandbox.fs.readTextFile("/home/app/dir/note.txt"), "hello sandbox");
  assert.deepEqual(Array.from(await sandbox.fs.readFile("/tmp/bytes.bin")), [0, 1, 2, 255]);

  const entries = [];
  for await (const entry of await sandbox.fs.readDir("dir")) entries.push(entry);
  assert.deepEqual(entries.map((entry) => [entry.name, entry.isFile, entry.isDirectory]), [["note.txt", true, false]]);

  const info = await sandbox.fs.stat("dir/note.txt");
  assert.equal(info.size, 13);
  assert.equal(info.isFile, true);
  assert.ok(info.mtime instanceof Date);

  await sandbox.fs.remove("dir", { recursive: true });
  await assert.rejects(sandbox.fs.stat("dir"), (error) => error.code === "ENOENT");
});

test("env set, get and inheritance by sh", async () => {
  await using sandbox = await Sandbox.create();
  await sandbox.env.set("GREETING", "hi there");
  assert.equal(await sandbox.env.get("GREETING"), "hi there");
  assert.equal(await sandbox.sh`echo $GREETING`.text(), "hi there\n");
  await sandbox.env.delete("GREETING");
  assert.equal(await sandbox.env.get("GREETING"), undefined);
});

test("second client connects to the same sandbox", async () => {
  await using first = await Sandbox.create({ timeout: "1m" });
  await first.fs.writeTextFile("shared.txt", "from the first client");
  await using second = await Sandbox.connect(first.id);
  assert.equal(second.id, first.id);
  assert.equal(await second.fs.readTextFile("shared.txt"), "from the first client");
});

test("extendTimeout grants a later stop time", async () => {
  await using sandbox = await Sandbox.create({ timeout: "30s" });
  const granted = await sandbox.extendTimeout("5m");
  const remaining = granted.getTime() - Date.now();
  assert.ok(remaining > 4 * 60_000 && remaining <= 5 * 60_000, `remaining ${remaining} ms`);
});

test("kill ends the sandbox", async () => {
  const sandbox = await Sandbox.create({ timeout: "1m" });
  const id = sandbox.id;
  await sandbox.kill();
  await assert.rejects(Sandbox.connect(id), (error) => error.status === 404);
});

test("list filters by labels", async () => {
  const label = `run-${Date.now()}`;
  await using labelled = await Sandbox.create({ labels: { suite: label } });
  await using other = await Sandbox.create({ labels: { suite: "other" } });
  const client = new Client({ token });
  const listed = await client.sandboxes.list({ labels: { suite: label } });
  assert.deepEqual(listed.map((row) => row.id), [labelled.id]);
  assert.equal(listed[0].status, "running");
  assert.deepEqual(listed[0].labels, { suite: label });
  assert.ok(!listed.some((row) => row.id === other.id));
});

test("invalid token is rejected", async () => {
  await assert.rejects(Sandbox.create({ token: "ddo_not_a_known_token" }), InvalidTokenError);
});
