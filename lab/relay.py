"""A TCP relay between the host's network namespace and the control plane's (lab/control_plane.py).

    python -m lab.relay --netns /proc/PID/ns/net --route host:127.0.0.1:6443=cp:127.0.0.1:6443 ...

Each route listens on one side (`host`: the namespace the relay was started in; `cp`: the one
named by --netns) and connects each accepted connection to the other address, on its side, then
copies bytes both ways until either end closes. TLS passes through untouched (the API server
verifies the kubelets' certificates by node name, and the kubelets the API server's).

Why a namespace of its own: the API server refuses to proxy to a node whose name resolves to a
loopback address ("address not allowed": it proxies only to global unicast addresses), and the
kubelet forwards qemu makes are on the host's loopback. In its own network namespace the API
server resolves the node names to addresses that are global unicast there, and this relay carries
those connections to the forwards, and the host's connections (the guests through qemu, kubectl)
to the API server. A socket stays in the namespace it was made in, so one process serves both
sides: it switches its namespace with setns(2) only to make a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket
import sys
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
READY = "relay: ready"
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Endpoint:
    side: str  # "host" or "cp"
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        side, host, port = text.rsplit(":", 2) if text.count(":") >= 2 else ("", "", "")
        if side not in ("host", "cp") or not port.isdigit():
            raise ValueError(f"not SIDE:ADDRESS:PORT with SIDE host or cp: {text!r}")
        return cls(side, host, int(port))

    def __str__(self) -> str:
        return f"{self.side}:{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    listen: Endpoint
    connect: Endpoint

    @classmethod
    def parse(cls, text: str) -> Route:
        listen, _, connect = text.partition("=")
        return cls(Endpoint.parse(listen), Endpoint.parse(connect))

    def __str__(self) -> str:
        return f"{self.listen}={self.connect}"


class Namespaces:
    def __init__(self, netns: str) -> None:
        self.fds = {"host": os.open("/proc/self/ns/net", os.O_RDONLY), "cp": os.open(netns, os.O_RDONLY)}

    def _enter(self, side: str) -> None:
        if _libc.setns(self.fds[side], CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns to the {side} network namespace: {os.strerror(errno)}")

    def socket(self, side: str) -> socket.socket:
        """A non-blocking TCP socket in the network namespace of `side`."""
        self._enter(side)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            self._enter("host")
        sock.setblocking(False)
        return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(namespaces: Namespaces, route: Route) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = namespaces.socket(route.connect.side)
        try:
            await asyncio.get_running_loop().sock_connect(upstream, (route.connect.host, route.connect.port))
        except OSError as error:
            print(f"relay: {route}: cannot connect: {error}", flush=True)
            upstream.close()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()

    listener = namespaces.socket(route.listen.side)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((route.listen.host, route.listen.port))
    listener.listen(128)
    return await asyncio.start_server(handle, sock=listener)


async def _main(namespaces: Namespaces, routes: list[Route]) -> None:
    servers = [await _serve(namespaces, route) for route in routes]
    for route in routes:
        print(f"relay: {route}", flush=True)
    print(READY, flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--netns", required=True, help="the cp side: a network namespace file (/proc/PID/ns/net)")
    parser.add_argument("--route", action="append", type=Route.parse, required=True,
                        help="SIDE:ADDRESS:PORT=SIDE:ADDRESS:PORT (listen=connect)")
    parser.add_argument("--control-plane-dir", help="the control plane this relay serves (for lab/proc.py)")
    args = parser.parse_args(argv)
    try:
        namespaces = Namespaces(args.netns)
        asyncio.run(_main(namespaces, args.route))
    except OSError as error:
        print(f"relay: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
