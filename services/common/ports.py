"""Picking a port to hand to another process (a server subprocess, Ray Serve's proxy, redis-server)."""

from __future__ import annotations

import random
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A free port outside the ephemeral range (32768+) and Ray's worker ports (10002-19999).

    A port picked from the ephemeral range can be taken by any process that binds port 0 before
    ours binds it (Ray starts many; seen as "Address already in use" in CI).
    """
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError("no free port between 20000 and 32000")
