"""What a failed call means to the person at the terminal: one line (status, message, what to do) and an exit code.

The server's messages already name the field at fault, and a configured limit
names its setting (`... over the limit of 40000000 (embedding.max_image_pixels)`);
this module adds what the caller can do about it, names the local file behind a
field (`images[3]` -> `good/17.png`), and gives each kind of failure its own exit
code, so scripts can tell "no server" from "bad input" from "a stage is down".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """`echo-iad` exit codes, one per kind of failure (`echo-iad --help` lists them)."""

    OK = 0
    NOT_READY = 1  # a check ran and said no (product check)
    USAGE = 2  # bad or missing flags (click's own code)
    NO_SERVER = 3  # nothing answers at the address
    BAD_INPUT = 4  # INVALID_ARGUMENT, or a local file that cannot be used
    LIMIT = 5  # over a configured limit, or RESOURCE_EXHAUSTED
    NOT_FOUND = 6
    PRECONDITION = 7  # FAILED_PRECONDITION: e.g. the line has no normal images yet
    TIMEOUT = 8  # DEADLINE_EXCEEDED
    STAGE_DOWN = 9  # UNAVAILABLE from a server that answered: one of its stages is down
    CONFIG = 10  # a settings file or Serve config is invalid
    DENIED = 11  # UNAUTHENTICATED or PERMISSION_DENIED
    SERVER_ERROR = 12  # INTERNAL, UNKNOWN, UNIMPLEMENTED and the rest
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODE_HELP = "Exit codes: " + ", ".join(f"{c.value} {c.name.lower().replace('_', ' ')}" for c in ExitCode) + "."

BY_STATUS: dict[str, ExitCode] = {
    "INVALID_ARGUMENT": ExitCode.BAD_INPUT,
    "OUT_OF_RANGE": ExitCode.BAD_INPUT,
    "RESOURCE_EXHAUSTED": ExitCode.LIMIT,
    "NOT_FOUND": ExitCode.NOT_FOUND,
    "FAILED_PRECONDITION": ExitCode.PRECONDITION,
    "DEADLINE_EXCEEDED": ExitCode.TIMEOUT,
    "UNAVAILABLE": ExitCode.STAGE_DOWN,
    "CANCELLED": ExitCode.STAGE_DOWN,
    "UNAUTHENTICATED": ExitCode.DENIED,
    "PERMISSION_DENIED": ExitCode.DENIED,
}
"""gRPC status name -> exit code (by name: this module is imported by `--help`, which must not load grpc)."""

_HINTS: dict[ExitCode, str] = {
    ExitCode.BAD_INPUT: "fix the named field or file and try again",
    ExitCode.NOT_FOUND: "check the names (`echo-iad product check` shows what a line has)",
    ExitCode.PRECONDITION: "the server cannot do this yet: see the message",
    ExitCode.TIMEOUT: "the server is slow or overloaded: retry, or raise --deadline-ms",
    ExitCode.STAGE_DOWN: "a stage of the server is down or restarting: check the server's log, then retry",
    ExitCode.DENIED: "the server refused these credentials",  # UNAUTHENTICATED; PERMISSION_DENIED: see below
    ExitCode.SERVER_ERROR: "this is a server bug: its log has the traceback",
}

# grpc-core's words when no connection could be made (refused, unresolvable, unreachable)
_NO_CONNECTION = re.compile(
    r"failed to connect to all addresses|errors resolving|DNS resolution failed|Connection refused|"
    r"No route to host|Network is unreachable|Socket closed|connections to all backends failing",
    re.IGNORECASE,
)
_SETTING = re.compile(r"over the limit of [^()]*\(([a-z_]+(?:\.[a-z_]+)+)\)")
_FIELD = re.compile(r"^(?P<prefix>(?:[a-z]+ stage: [A-Z_]+: )?)(?P<field>[A-Za-z_][\w.]*(?:\[\d+\])?[\w.]*): ")
_MESSAGE_TOO_LARGE = re.compile(r"(larger than max|message too large)", re.IGNORECASE)
_NO_REVIEW_RIGHT = re.compile(r"lacks the right review: true")  # services/common/auth.py require_review_right


@dataclass(frozen=True)
class Problem:
    """One failure as the user reads it: `STATUS: message: what to do`, and the exit code of its kind."""

    status: str
    message: str
    hint: str
    exit_code: ExitCode

    def line(self) -> str:
        return ": ".join(part for part in (self.status, self.message, self.hint) if part)


class CliError(Exception):
    """A failure the CLI reports as one line (no traceback unless --debug)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.line())
        self.problem = problem

    @classmethod
    def bad_input(cls, message: str, hint: str = "") -> CliError:
        return cls(Problem("INVALID_ARGUMENT", message, hint or _HINTS[ExitCode.BAD_INPUT], ExitCode.BAD_INPUT))


def refused_field(details: str) -> str:
    """The field a server's message starts with (`images[3]` of `images[3]: cannot be decoded`), or ""."""
    m = _FIELD.match(details)
    return m.group("field") if m else ""


def _name_files(details: str, files: Mapping[str, Path | str]) -> str:
    """`images[3]: cannot be decoded` -> `images[3] (good/17.png): cannot be decoded`: the file behind a field."""
    m = _FIELD.match(details)
    if not m:
        return details
    field = m.group("field")
    for known, path in files.items():
        if field == known or field.startswith(f"{known}."):
            return f"{m.group('prefix')}{field} ({path}): {details[m.end() :]}"
    return details


def explain_rpc_error(
    err: Any, address: str, files: Mapping[str, Path | str] | None = None, *, application: str = ""
) -> Problem:
    """A failed call as one line for a person, and its exit code.

    Args:
        err: the grpc.RpcError the stub raised.
        address: where the call went (named when nothing answers there).
        files: request field -> the local file it came from (`image`, `images[0]`, ...), named in the message.
        application: the Ray Serve application the call was routed to, if any.
    """
    code = err.code() if callable(getattr(err, "code", None)) else None
    status = getattr(code, "name", "UNKNOWN")
    details = (err.details() if callable(getattr(err, "details", None)) else "") or str(err)
    if status == "UNAVAILABLE" and _NO_CONNECTION.search(details):
        where = f"no Echo-IAD server at {address}"
        hint = (
            f"is Ray Serve's gRPC proxy running, with an application named {application!r}? (`serve status`)"
            if application
            else "is `echo-iad serve` running?"
        )
        return Problem(status, where, hint, ExitCode.NO_SERVER)
    if status == "UNIMPLEMENTED" and application:
        hint = f"is {application!r} the Inspector's application? (`serve status` lists them)"
        return Problem(status, details, hint, ExitCode.SERVER_ERROR)
    message = _name_files(details, files or {})
    setting = _SETTING.search(details)
    if setting:
        name = setting.group(1)
        return Problem(status, message, f"send less, or raise `{name}` in the server's settings", ExitCode.LIMIT)
    if status == "RESOURCE_EXHAUSTED" and _MESSAGE_TOO_LARGE.search(details):
        hint = "send fewer or smaller images per call, or raise `server.max_message_mb` on both ends"
        return Problem(status, message, hint, ExitCode.LIMIT)
    if status == "RESOURCE_EXHAUSTED":
        return Problem(status, message, "the server is busy: retry with backoff", ExitCode.LIMIT)
    if status == "PERMISSION_DENIED" and _NO_REVIEW_RIGHT.search(details):
        hint = (
            "the token is valid but lacks `review: true`: confirm with a token whose entry in the server's tokens "
            "file (server.auth.tokens_file) has `review: true` for this line"
        )
        return Problem(status, message, hint, ExitCode.DENIED)
    if status == "PERMISSION_DENIED":  # the token was accepted; this call is outside its rights
        return Problem(status, message, "the token is valid but may not do this: see the message", ExitCode.DENIED)
    if status == "FAILED_PRECONDITION" and "no normal images" in details:
        return Problem(status, message, "add them first with `echo-iad product add`", ExitCode.PRECONDITION)
    kind = BY_STATUS.get(status, ExitCode.SERVER_ERROR)
    return Problem(status, message, "" if "`echo-iad " in details else _HINTS[kind], kind)  # the server said what
