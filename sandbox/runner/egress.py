"""The way out for jobs that download: HTTPS to the model hubs, and nothing else.

Two halves. `Proxy` runs outside the job (the Docker adapter serves it on a Unix socket in
the job's folder): it answers `CONNECT host:443` for allow-listed hub hosts only, and only
when the name resolves to a public address (so a hub name pointed at 169.254.169.254 or
at the host gets nowhere); everything else gets 403, plain HTTP included. `forward` runs
inside the job, whose container has no network: it listens on 127.0.0.1:3128 (where
HTTPS_PROXY points) and carries each connection to the mounted socket.

    python3 -m sandbox.runner.egress --port 3128 --allow huggingface.co,*.hf.co,...
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import ipaddress
import socket
import sys

DEFAULT_ALLOW = ("huggingface.co", "*.huggingface.co", "hf.co", "*.hf.co", "modelscope.cn", "*.modelscope.cn",
                 "*.aliyuncs.com", "*.xethub.hf.co")
MAX_HEADER = 8192
FORWARD_PORT = 3128
SOCKET_IN_SANDBOX = "/run/hammer/egress.sock"
MAX_CLIENTS = 64
CONNECT_TIMEOUT_S = 15
IDLE_TIMEOUT_S = 300


def allowed(host: str, allow: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return False  # addresses are never allowed, only hub names
    except ValueError:
        pass
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in allow)


def public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast)


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


_dial = asyncio.open_connection  # the upstream connection (a test points it at a local server)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S):
            writer.write(data)
            await writer.drain()
    except (TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


class Proxy:
    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow = allow
        self.clients = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        try:
            if self.clients > MAX_CLIENTS:
                await self._refuse(writer, 503, "too many connections")
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                await self._refuse(writer, 400, "bad request")
                return
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            target = rest.split(" ", 1)[0]
            host, _, port_text = target.rpartition(":")
            if method != "CONNECT" or not port_text.isdigit():
                await self._refuse(writer, 403, "only HTTPS (CONNECT) to the model hubs")
                return
            port = int(port_text)
            if port != 443 or not allowed(host, self.allow):
                await self._refuse(writer, 403, f"{host}:{port} is not a model hub this gateway allows")
                return
            try:
                addresses = [a for a in await _resolve(host, port) if public(a)]
            except OSError:
                addresses = []
            if not addresses:
                await self._refuse(writer, 502, f"{host} does not resolve to a public address")
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(_dial(addresses[0], port), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                await self._refuse(writer, 502, f"cannot reach {host}")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.clients -= 1
            writer.close()

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
        body = f"hammer egress: {reason}\n".encode()
        writer.write(f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     .encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass


async def forward(socket_path: str, port: int = FORWARD_PORT) -> asyncio.AbstractServer:
    """Inside the job: 127.0.0.1:`port` -> the proxy's Unix socket."""
    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(carry, "127.0.0.1", port)


async def serve(port: int, allow: tuple[str, ...]) -> None:
    proxy = Proxy(allow)
    server = await asyncio.start_server(proxy.handle, "0.0.0.0", port, limit=MAX_HEADER)  # noqa: S104 - its own net
    print(f"hammer egress proxy on :{port}, allowing {', '.join(allow)}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m sandbox.runner.egress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3128)
    parser.add_argument("--allow", default=",".join(DEFAULT_ALLOW), help="comma-separated host patterns")
    args = parser.parse_args(argv)
    allow = tuple(p.strip().lower() for p in args.allow.split(",") if p.strip())
    try:
        asyncio.run(serve(args.port, allow))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
