"""The server's corked transport: a response's writes leave together, in order, and nothing
held is lost on close."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
from phalanx.extender.server import CorkedTransport

from tests.extender_harness import serve_app


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, chunks: list[bytes]) -> None:
        self.calls.append(("writelines", list(chunks)))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_leave_as_one_call_in_order() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        inner = RecordingTransport()
        corked = CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        corked.write(b"body")
        assert inner.calls == []  # held until the loop's next turn
        await asyncio.sleep(0)
        corked.write(b"next")
        await asyncio.sleep(0)
        return inner.calls

    calls = asyncio.run(scenario())
    assert calls == [
        ("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"]),
        ("write", b"next"),
    ]


def test_close_sends_what_is_held_first_and_later_writes_are_dropped() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        inner = RecordingTransport()
        corked = CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"head")
        corked.write(b"tail")
        corked.close()
        corked.write(b"after close")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return inner.calls

    calls = asyncio.run(scenario())
    assert calls == [("writelines", [b"head", b"tail"]), ("close", None)]


def test_everything_else_is_the_wrapped_transports() -> None:
    async def scenario() -> str:
        corked = CorkedTransport(RecordingTransport(), asyncio.get_running_loop())  # type: ignore[arg-type]
        return corked.get_extra_info("peername")

    assert asyncio.run(scenario()) == "info:peername"


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    reply = orjson.dumps({"path": scope["path"], "size": len(body)})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(reply))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


def _read_replies(sock: socket.socket, count: int) -> list[bytes]:
    data, bodies = b"", []
    while len(bodies) < count:
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        bodies.append(rest[:length])
        data = rest[length:]
    return bodies


def test_pipelined_and_closing_requests_get_whole_replies_in_order() -> None:
    """Through uvicorn: two pipelined requests on one connection, then one asking to close;
    every reply arrives whole and in order, and the close comes after the last reply."""
    with serve_app(_echo_app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            big = b"x" * 300_000
            request = (
                b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(big)
            )
            sock.sendall(request + big)
            first, second = _read_replies(sock, 2)
            assert orjson.loads(first) == {"path": "/a", "size": 3}
            assert orjson.loads(second) == {"path": "/b", "size": len(big)}
            sock.sendall(
                b"POST /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
            (third,) = _read_replies(sock, 1)
            assert orjson.loads(third) == {"path": "/c", "size": 0}
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed after the reply was sent
