"""Tests never reach the internet: `install()` makes every connection to a non-loopback address fail in this
process (Unix sockets and 127.0.0.0/8, ::1, localhost stay open). conftest.py installs it for the test run;
a test's own subprocess installs it with `import tests.no_network; tests.no_network.install()`."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket (the wandb SDK's service, Postgres' local socket)
    host = str(address[0])
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host in LOOPBACK_NAMES


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(method, "guarded", False):
        return method

    def connect(sock: socket.socket, address: Any) -> Any:
        if not is_loopback(address):
            raise ConnectionRefusedError(f"tests never leave 127.0.0.1: refused a connection to {address!r}")
        return method(sock, address)

    connect.guarded = True  # type: ignore[attr-defined]
    return connect


def install() -> None:
    socket.socket.connect = _guarded(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(socket.socket.connect_ex)  # type: ignore[method-assign]
