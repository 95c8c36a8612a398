"""The egress proxy jobs download through: hub hosts over HTTPS, nothing else."""

from __future__ import annotations

import asyncio

import pytest

from sandbox.runner import egress
from sandbox.runner.egress import DEFAULT_ALLOW, Proxy, allowed, public


def test_only_hub_names_are_allowed() -> None:
    assert allowed("huggingface.co", DEFAULT_ALLOW) and allowed("cdn-lfs.huggingface.co", DEFAULT_ALLOW)
    assert allowed("www.modelscope.cn", DEFAULT_ALLOW)
    for host in ("evil.example", "huggingface.co.evil.example", "169.254.169.254", "127.0.0.1", "::1",
                 "metadata.google.internal"):
        assert not allowed(host, DEFAULT_ALLOW), host


def test_only_public_addresses_are_dialled() -> None:
    assert public("8.8.8.8")
    for address in ("169.254.169.254", "127.0.0.1", "10.1.2.3", "172.17.0.1", "192.168.1.1", "::1", "fe80::1"):
        assert not public(address), address


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    body = await asyncio.wait_for(reader.read(200), 5) if not head.startswith(b"HTTP/1.1 200") else b""
    writer.close()
    return head + body


async def test_the_proxy_refuses_everything_but_connect_to_an_allowed_public_hub(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]
    answers = {"huggingface.co": ["8.8.8.8"], "modelscope.cn": ["169.254.169.254"]}  # no real DNS in tests

    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    real_open = asyncio.open_connection

    async def dial(host: str, port: int):  # type: ignore[no-untyped-def]
        assert host == "8.8.8.8"  # the public address it resolved; the test's echo server stands in for it
        return await real_open("127.0.0.1", upstream_port)

    monkeypatch.setattr(egress, "_resolve", resolve)
    monkeypatch.setattr(egress, "_dial", dial)
    server = await asyncio.start_server(Proxy(DEFAULT_ALLOW).handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert b" 403 " in await _ask(port, b"GET http://huggingface.co/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 403 " in await _ask(port, b"CONNECT evil.example:443 HTTP/1.1\r\n\r\n")
        assert b" 403 " in await _ask(port, b"CONNECT 169.254.169.254:443 HTTP/1.1\r\n\r\n")
        assert b" 403 " in await _ask(port, b"CONNECT huggingface.co:22 HTTP/1.1\r\n\r\n")
        refused = await _ask(port, b"CONNECT modelscope.cn:443 HTTP/1.1\r\n\r\n")
        assert b" 502 " in refused and b"public address" in refused  # a hub name pointed inward
        reader, writer = await real_open("127.0.0.1", port)
        writer.write(b"CONNECT huggingface.co:443 HTTP/1.1\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(4), 5) == b"ping"  # the tunnel carries bytes both ways
        writer.close()
    finally:
        server.close()
        upstream.close()
