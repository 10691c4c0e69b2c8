"""What tests that start local servers share: a free loopback port, and the rule for a server that cannot start."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(what: str, why: str | None) -> None:
    """Skip the calling test when `why` says `what` cannot run here; fail it under CI, where the README's test command
    installs everything, so a missing server is a broken set-up and not a reason to test less."""
    import pytest

    if why is None:
        return
    message = f"{what} tests cannot run: {why}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
