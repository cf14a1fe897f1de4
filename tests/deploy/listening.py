"""The TCP sockets a set of processes listens on, read from /proc (what `ss -ltnp` shows), for bind tests."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # st column of /proc/net/tcp{,6}


@dataclass(frozen=True)
class Listener:
    host: str  # "0.0.0.0" and "::" are every interface
    port: int
    pid: int
    process: str  # the command's first word, e.g. "ray::ProxyActor" or ".../haproxy"

    @property
    def everywhere(self) -> bool:
        return self.host in ("0.0.0.0", "::")


def _address(hex_address: str) -> tuple[str, int]:
    """`0100007F:1F90` or a 32-hex-digit IPv6 address (four host-order 32-bit words) -> ("127.0.0.1", 8080)."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    host = ipaddress.ip_address(packed)
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        host = host.ipv4_mapped
    return str(host), int(port_hex, 16)


def listening_inodes() -> dict[int, tuple[str, int]]:
    """Socket inode -> (host, port) of every listening TCP socket in this network namespace."""
    out: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN:
                out[int(fields[9])] = _address(fields[1])
    return out


def listeners(pids: list[int]) -> list[Listener]:
    """Every listening TCP socket that one of `pids` holds open."""
    inodes = listening_inodes()
    out: list[Listener] = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # the process ended meanwhile
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[len("socket:[") : -1])
                if inode in inodes:
                    out.append(Listener(*inodes[inode], pid=pid, process=cmdline))
    return sorted(set(out), key=lambda s: (s.port, s.host, s.pid))
