"""Runs Deno's Python SDK (PyPI deno-sandbox) against the local sandbox server.

Needs DENO_SANDBOX_ENDPOINT, DENO_DEPLOY_ENDPOINT and DENO_DEPLOY_TOKEN; local/conformance/run.sh sets them.
The Python SDK has no shell helper and no working abort signal, so `sh` runs as `bash -c`, and the
abort case leaves the process's context manager, which sends the same processKill an abort sends.
"""

import os
import time
from datetime import datetime, timezone

import pytest
from deno_sandbox import DenoDeploy, Options
from deno_sandbox.errors import AuthenticationError


@pytest.fixture(scope="module")
def deploy():
    return DenoDeploy()


def run_sh(sandbox, script):
    """Runs `script` with bash and returns (status, stdout, stderr)."""
    child = sandbox.spawn("bash", args=["-c", script], stdout="piped", stderr="piped")
    stdout = child.stdout.read()
    stderr = child.stderr.read()
    return child.wait(), stdout, stderr


def test_create_and_sh(deploy):
    with deploy.sandbox.create(timeout="2m") as sandbox:
        assert sandbox.id.startswith("sbx_ord_")
        assert len(sandbox.id) == 28
        status, stdout, stderr = run_sh(sandbox, "echo out; echo err >&2; exit 3")
        assert stdout == b"out\n"
        assert stderr == b"err\n"
        assert status["code"] == 3
        assert status["success"] is False

        status, stdout, _ = run_sh(sandbox, "pwd")
        assert status["success"] is True
        assert stdout == b"/home/app\n"


def test_abort_kills_command(deploy):
    with deploy.sandbox.create() as sandbox:
        started = time.monotonic()
        with sandbox.spawn("sleep", args=["30"], stdout="piped", stderr="piped") as child:
            time.sleep(0.3)
            pid = child.pid
        assert time.monotonic() - started < 10
        # Leaving the context manager sent processKill, so the process must be gone.
        _, stdout, _ = run_sh(sandbox, f"sleep 0.2; test -e /proc/{pid} && echo alive || echo gone")
        assert stdout == b"gone\n"


def test_files(deploy):
    with deploy.sandbox.create() as sandbox:
        sandbox.fs.mkdir("dir")
        sandbox.fs.write_text_file("dir/note.txt", "hello python")
        sandbox.fs.write_file("/tmp/bytes.bin", b"\x00\x01\xff")

        assert sandbox.fs.read_text_file("/home/app/dir/note.txt") == "hello python"
        assert sandbox.fs.read_file("/tmp/bytes.bin") == b"\x00\x01\xff"

        entries = sandbox.fs.read_dir("dir")
        assert [(entry["name"], entry["is_file"]) for entry in entries] == [("note.txt", True)]

        info = sandbox.fs.stat("dir/note.txt")
        assert info["size"] == 12
        assert info["is_file"] is True

        sandbox.fs.remove("dir", recursive=True)
        with pytest.raises(Exception, match="ENOENT|NotFound"):
            sandbox.fs.stat("dir")


def test_env(deploy):
    with deploy.sandbox.create() as sandbox:
        sandbox.env.set("GREETING", "hello")
        assert sandbox.env.get("GREETING") == "hello"
        _, stdout, _ = run_sh(sandbox, "echo $GREETING")
        assert stdout == b"hello\n"
        sandbox.env.delete("GREETING")
        assert sandbox.env.get("GREETING") is None


def test_connect_second_client(deploy):
    with deploy.sandbox.create(timeout="1m") as first:
        first.fs.write_text_file("shared.txt", "from the first client")
        with deploy.sandbox.connect(first.id) as second:
            assert second.id == first.id
            assert second.fs.read_text_file("shared.txt") == "from the first client"


def test_extend_timeout(deploy):
    with deploy.sandbox.create(timeout="30s") as sandbox:
        granted = sandbox.extend_timeout(300)
        remaining = (granted - datetime.now(timezone.utc)).total_seconds()
        assert 240 < remaining <= 300


def test_kill(deploy):
    with deploy.sandbox.create(timeout="1m") as sandbox:
        sandbox_id = sandbox.id
        sandbox.kill()
        rows = [row for row in deploy.sandbox.list().items if row["id"] == sandbox_id]
        assert [row["status"] for row in rows] == ["stopped"]
    with pytest.raises(Exception):
        with deploy.sandbox.connect(sandbox_id):
            pass


def test_list_with_labels(deploy):
    label = f"py-{time.time_ns()}"
    with deploy.sandbox.create(labels={"suite": label}) as labelled:
        with deploy.sandbox.create(labels={"suite": "other"}) as other:
            listed = deploy.sandbox.list(labels={"suite": label}).items
            assert [row["id"] for row in listed] == [labelled.id]
            assert listed[0]["status"] == "running"
            assert other.id not in [row["id"] for row in listed]


def test_invalid_token():
    deploy = DenoDeploy(Options(token="ddo_not_a_known_token"))
    with pytest.raises(AuthenticationError):
        with deploy.sandbox.create():
            pass
