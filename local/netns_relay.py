#!/usr/bin/env python3
"""Run a server that binds every interface inside a private network namespace, reachable only
through a relay on 127.0.0.1 of the host namespace.

DynamoDB Local always listens on 0.0.0.0. This process opens the relay's listening socket on the
host's loopback first, then moves itself into a new network namespace (where only `lo` exists),
starts the server there and relays each accepted connection to 127.0.0.1:PORT inside the
namespace. Sockets keep the namespace they were created in, so the listener stays on the host's
loopback while every connection to the server is made inside the private namespace.

Usage: netns_relay.py HOST_PORT INNER_PORT -- COMMAND [ARGS...]
Needs root (or CAP_SYS_ADMIN) for unshare(2). Exits when the server exits; SIGTERM stops both.
"""

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


def unshare_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise SystemExit(f"netns_relay: unshare(CLONE_NEWNET) failed: {os.strerror(errno)}; run as root")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def kill_with_parent() -> None:
    """Runs in the child before exec so the server dies if this relay dies."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def relay(listener: socket.socket, inner_port: int, server: subprocess.Popen) -> int:
    async def on_client(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", inner_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    relay_server = await asyncio.start_server(on_client, sock=listener)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))

    async def watch_server():
        while server.poll() is None:
            await asyncio.sleep(0.2)

    watcher = asyncio.ensure_future(watch_server())
    await asyncio.wait([stop, watcher], return_when=asyncio.FIRST_COMPLETED)
    relay_server.close()
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0 if stop.done() else (server.returncode or 1)


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    host_port, inner_port = int(sys.argv[1]), int(sys.argv[2])
    command = sys.argv[4:]

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", host_port))
    except OSError as error:
        print(f"netns_relay: cannot listen on 127.0.0.1:{host_port}: {error.strerror}", file=sys.stderr)
        return 1
    listener.listen(128)
    listener.setblocking(False)

    unshare_network()
    server = subprocess.Popen(command, preexec_fn=kill_with_parent)
    return asyncio.run(relay(listener, inner_port, server))


if __name__ == "__main__":
    sys.exit(main())
