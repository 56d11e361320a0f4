#!/usr/bin/env python3
"""Plays one agent session against the functions running under `cargo lambda watch`.

Every step is one HTTP request to a function URL of the watch server, on the same route the
platform uses (`POST /tools/<tool>`, `PUT /connections/deno`, ...). For each step it prints the
request and the compact JSON result, checks the result's values and stops with exit status 1 at
the first wrong one. Python standard library only, so it runs before anything else is installed.

Usage:
  demo_session.py --port PORT [--keep-sandbox EVENT_DIR]

The stack's environment (local/.state/stack.env) must be loaded: LOCAL_DENO_TOKEN is the token the
local sandbox server accepts. With --keep-sandbox the script finally creates one more sandbox,
leaves it running, writes an API Gateway event for `deno_exec` into EVENT_DIR and prints how to
call the tool with curl and with `cargo lambda invoke`.
"""

import argparse
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request

ORG_ID = "org-demo"
ADMIN_ID = "admin-demo"
USER_ID = "user-demo"

ORDERS_CSV = """order_id,region,item,quantity,unit_price
1001,EU,notebook,3,4.50
1002,US,pen,10,1.20
1003,EU,backpack,1,39.90
1004,APAC,notebook,5,4.50
1005,US,backpack,2,39.90
1006,EU,pen,4,1.20
"""

REPORT_TS = """// Sums the revenue per region of an orders CSV file and writes the totals as JSON.
const [input, output] = Deno.args;
const rows = (await Deno.readTextFile(input)).trim().split("\\n").slice(1);
const totals: Record<string, number> = {};
for (const row of rows) {
  const [, region, , quantity, unitPrice] = row.split(",");
  totals[region] = (totals[region] ?? 0) + Number(quantity) * Number(unitPrice);
}
const revenue = Object.fromEntries(
  Object.keys(totals).sort().map((region) => [region, Math.round(totals[region] * 100) / 100]),
);
const report = JSON.stringify({ orders: rows.length, revenue }, null, 2) + "\\n";
await Deno.writeTextFile(output, report);
console.log(`${rows.length} orders, ${Object.keys(revenue).length} regions`);
"""

RUN_SH = """#!/bin/sh
# Builds out/report.json from data/orders.csv with the TypeScript program.
set -eu
mkdir -p out
deno run --allow-read=data --allow-write=out report.ts data/orders.csv out/report.json
echo "report: $(wc -c < out/report.json) bytes"
"""

# Report that report.ts writes for ORDERS_CSV. json.dumps with indent 2 formats like JSON.stringify.
EXPECTED_REPORT = {"orders": 6, "revenue": {"APAC": 22.5, "EU": 58.2, "US": 91.8}}
EXPECTED_REPORT_TEXT = json.dumps(EXPECTED_REPORT, indent=2) + "\n"


class StepFailed(Exception):
    """A step's response differs from what the session expects."""


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


class Session:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}/lambda-url"
        self.session_id = f"session-demo-{int(time.time())}"
        self.step_number = 0
        self.call_number = 0

    def context(self) -> dict:
        self.call_number += 1
        return {
            "org_id": ORG_ID,
            "user_id": USER_ID,
            "session_id": self.session_id,
            "tool_call_id": f"call-{self.call_number}",
        }

    def send(self, title: str, function: str, method: str, path: str, body: dict, displayed: dict):
        """Sends one request, prints it and its result, and returns the status and the JSON body."""
        self.step_number += 1
        print(f"\n{self.step_number:2}. {title}")
        print(f"    -> {method} {path} {compact(displayed)}")
        request = urllib.request.Request(
            f"{self.base}/{function}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"content-type": "application/json"},
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except OSError as err:
            raise StepFailed(f"{function} did not respond: {err}") from err
        elapsed_ms = (time.monotonic() - started) * 1000
        try:
            payload = json.loads(raw)
        except ValueError as err:
            raise StepFailed(f"{function} responded {status} with a body that is not JSON") from err
        shown_payload = payload.get("result", payload) if isinstance(payload, dict) else payload
        print(f"    <- {status} in {elapsed_ms:.0f} ms {compact(shown_payload)}")
        return status, payload

    def tool(self, title: str, tool: str, arguments: dict, displayed=None, status: int = 200) -> dict:
        """Calls `tool`, checks the HTTP status and returns the result (the whole body for errors)."""
        got, payload = self.send(
            title,
            tool,
            "POST",
            f"/tools/{tool}",
            {"context": self.context(), "arguments": arguments},
            arguments if displayed is None else displayed,
        )
        expect(got == status, f"expected HTTP {status}, got {got}")
        return payload.get("result", payload) if status == 200 else payload


def run_session(session: Session, token: str) -> None:
    """Plays the session and raises StepFailed at the first wrong result."""
    status, payload = session.send(
        "enable the Deno capability for the organization (as its administrator)",
        "deno_capability_admin",
        "PUT",
        f"/admin/orgs/{ORG_ID}/capabilities/deno",
        {"context": {"user_id": ADMIN_ID}, "arguments": {"enabled": True}},
        {"enabled": True, "by": ADMIN_ID},
    )
    expect(status == 200, f"expected HTTP 200, got {status}")
    expect(payload["result"]["enabled"] is True, "capability is not enabled")

    status, payload = session.send(
        "connect the organization's Deno token (as the user)",
        "deno_connection",
        "PUT",
        "/connections/deno",
        {"context": session.context(), "arguments": {"token": token}},
        {"token": "<LOCAL_DENO_TOKEN from local/.state/stack.env>"},
    )
    expect(status == 200, f"expected HTTP 200, got {status}")
    expect(payload["result"]["status"] == "connected", "connection status is not connected")
    expect(token not in compact(payload), "the response contains the token")

    report = session.tool(
        "create the sandbox for the report", "deno_create_sandbox", {"title": "report", "timeout": "10m"}
    )
    expect(report["status"] == "running", "new sandbox is not running")
    expect(590 <= report["expires_in_seconds"] <= 600, "a 10m sandbox does not expire in 10 minutes")
    report_id = report["sandbox_id"]

    scratch = session.tool(
        "create a second sandbox", "deno_create_sandbox", {"title": "scratch", "timeout": "5m"}
    )
    expect(scratch["status"] == "running", "new sandbox is not running")
    scratch_id = scratch["sandbox_id"]
    expect(scratch_id != report_id, "both sandboxes have the same id")

    for path, content in (("data/orders.csv", ORDERS_CSV), ("report.ts", REPORT_TS), ("run.sh", RUN_SH)):
        arguments = {"sandbox_id": report_id, "path": path, "content": content}
        displayed = dict(arguments, content=f"<{content.count(chr(10))} lines>")
        title = f"write {path} into the report sandbox"
        written = session.tool(title, "deno_write_file", arguments, displayed)
        print("\n".join(f"       | {line}" for line in content.splitlines()))
        expect(written["bytes_written"] == len(content.encode()), "bytes_written differs from the size")
        expect(written["path"] == f"/home/app/{path}", "the file was not written under /home/app")

    ran = session.tool(
        "run the shell script, which runs the TypeScript program with deno run",
        "deno_exec",
        {"sandbox_id": report_id, "command": "sh run.sh", "env": {"NO_COLOR": "1"}},
    )
    expect(ran["exit_code"] == 0, f"exit code {ran['exit_code']}, stderr: {ran['stderr']!r}")
    expected_stdout = f"6 orders, 3 regions\nreport: {len(EXPECTED_REPORT_TEXT)} bytes\n"
    expect(ran["stdout"] == expected_stdout, f"stdout {ran['stdout']!r}, expected {expected_stdout!r}")
    expect(ran["timed_out"] is False, "the command timed out")

    read = session.tool(
        "read the report back", "deno_read_file", {"sandbox_id": report_id, "path": "out/report.json"}
    )
    expect(read["content"] == EXPECTED_REPORT_TEXT, f"report content {read['content']!r}")
    expect(json.loads(read["content"]) == EXPECTED_REPORT, "report totals are wrong")
    expect(read["truncated"] is False, "the read was truncated")

    failed = session.tool(
        "run the program in the second sandbox, which does not have it: a failing command",
        "deno_exec",
        {"sandbox_id": scratch_id, "command": "deno run report.ts", "env": {"NO_COLOR": "1"}},
    )
    expect(failed["exit_code"] == 1, f"exit code {failed['exit_code']}, expected 1")
    missing = 'Module not found "file:///home/app/report.ts"'
    expect(missing in failed["stderr"], f"stderr {failed['stderr']!r}")
    print(f"       exit code {failed['exit_code']}, stderr: {failed['stderr'].strip()}")

    listed = session.tool("list the session's sandboxes", "deno_list_sandboxes", {})
    expect(listed["count"] == 2, f"count {listed['count']}, expected 2")
    by_id = {sandbox["sandbox_id"]: sandbox for sandbox in listed["sandboxes"]}
    expect(set(by_id) == {report_id, scratch_id}, "the list does not hold exactly the two sandboxes")
    expect(all(sandbox["status"] == "running" for sandbox in by_id.values()), "not every sandbox is running")

    extended = session.tool(
        "extend the report sandbox to 20 minutes from now",
        "deno_manage_sandbox",
        {"sandbox_id": report_id, "action": "extend", "duration": "20m"},
    )
    remaining = extended["expires_in_seconds"]
    expect(1190 <= remaining <= 1200, f"expires in {remaining} s, expected 1200")
    expect(extended["status"] == "running", "the extended sandbox is not running")

    for sandbox_id in (report_id, scratch_id):
        deleted = session.tool(
            f"delete {sandbox_id}", "deno_manage_sandbox", {"sandbox_id": sandbox_id, "action": "delete"}
        )
        expect(deleted["outcome"] == "deleted", f"outcome {deleted['outcome']}, expected deleted")

    listed = session.tool(
        "list again, asking the sandbox service for the current state",
        "deno_list_sandboxes",
        {"refresh": True},
    )
    expect(listed["count"] == 2, f"count {listed['count']}, expected 2")
    expect(all(sandbox["status"] == "deleted" for sandbox in listed["sandboxes"]), "a sandbox is not deleted")

    on_deleted = session.tool(
        "run a command in the deleted sandbox",
        "deno_exec",
        {"sandbox_id": report_id, "command": "true"},
        status=404,
    )
    expect(on_deleted["error"]["code"] == "sandbox_not_found", f"error code {on_deleted['error']['code']}")


def keep_sandbox(session: Session, port: int, event_dir: str) -> None:
    """Creates a sandbox for interactive use and prints how to call deno_exec on it."""
    interactive = session.tool(
        "create a sandbox for interactive use",
        "deno_create_sandbox",
        {"title": "interactive", "timeout": "60m"},
    )
    sandbox_id = interactive["sandbox_id"]
    session.tool(
        "write hello.ts into it",
        "deno_write_file",
        {
            "sandbox_id": sandbox_id,
            "path": "hello.ts",
            "content": 'console.log(`hello from ${Deno.cwd()}`);\n',
        },
    )
    body = {
        "context": {"org_id": ORG_ID, "user_id": USER_ID, "session_id": session.session_id},
        "arguments": {"sandbox_id": sandbox_id, "command": "deno run hello.ts && uname -sr"},
    }
    os.makedirs(event_dir, exist_ok=True)
    event_path = os.path.join(event_dir, "deno_exec.json")
    with open(event_path, "w") as handle:
        json.dump(api_gateway_event("deno_exec", "POST", "/tools/deno_exec", body), handle, indent=2)
        handle.write("\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    url = f"http://127.0.0.1:{port}/lambda-url/deno_exec/tools/deno_exec"
    print(
        f"""
The stack stays up. Sandbox {sandbox_id} (session {session.session_id}) runs for 60 minutes.

Call deno_exec over HTTP, as the platform does:

  curl -sS -X POST {url} \\
    -H 'content-type: application/json' \\
    -d {shlex.quote(compact(body))}

Or send the API Gateway event in {os.path.relpath(event_path, root)} with cargo lambda:

  PATH="$PWD/.venv/bin:$PATH" cargo lambda invoke -A 127.0.0.1 -P {port} deno_exec \\
    --data-file {os.path.relpath(event_path, root)}

Other tools take the same context on /lambda-url/<tool>/tools/<tool>. Stop everything with:

  make demo-stop"""
    )


def api_gateway_event(function: str, method: str, path: str, body: dict) -> dict:
    """Returns an API Gateway HTTP API (v2) event carrying `body`, as API Gateway sends it."""
    route = f"{method} {path}"
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "localhost"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "cargo-lambda",
            },
            "requestId": f"demo-{function}",
            "routeKey": route,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": compact(body),
        "isBase64Encoded": False,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port of cargo lambda watch on 127.0.0.1")
    parser.add_argument(
        "--keep-sandbox", metavar="EVENT_DIR", help="leave one sandbox running and write an event file here"
    )
    options = parser.parse_args()
    token = os.environ.get("LOCAL_DENO_TOKEN")
    if not token:
        print(
            "demo: LOCAL_DENO_TOKEN is not set; load local/.state/stack.env after stack.py start --sandbox-server",
            file=sys.stderr,
        )
        return 2

    session = Session(options.port)
    print(f"Agent session {session.session_id} of {USER_ID} in {ORG_ID} on http://127.0.0.1:{options.port}")
    started = time.monotonic()
    try:
        run_session(session, token)
        print(f"\nAll {session.step_number} steps succeeded in {time.monotonic() - started:.1f} s.")
        if options.keep_sandbox:
            keep_sandbox(session, options.port, options.keep_sandbox)
    except StepFailed as failure:
        sys.stdout.flush()
        print(f"\nFAILED at step {session.step_number}: {failure}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"\ninterrupted at step {session.step_number}", file=sys.stderr)
        return 130
    except (KeyError, TypeError) as err:
        sys.stdout.flush()
        print(f"\nFAILED at step {session.step_number}: the result lacks {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
