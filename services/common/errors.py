"""Domain errors that map one-to-one onto gRPC status codes.

Stage logic raises these (it never imports grpc); the thin servicers turn them
into a status with a message that names the field or the stage at fault.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

log = logging.getLogger(__name__)


class EchoError(Exception):
    """Base error; `code` is the gRPC status the caller receives."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)

    @property
    def message(self) -> str:
        return str(self)


class InvalidArgument(EchoError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(EchoError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(EchoError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(EchoError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(EchoError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(EchoError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(EchoError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(EchoError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ConfigError(EchoError):
    """Bad configuration found at start-up; the message names the key or file."""

    code = grpc.StatusCode.FAILED_PRECONDITION


_CODE_TO_ERROR: dict[grpc.StatusCode, type[EchoError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Unavailable,
        DeadlineExceeded,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
    )
}


def from_rpc_error(err: grpc.RpcError, stage: str) -> EchoError:
    """Turn a downstream stage's failure into our error, naming the stage."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _CODE_TO_ERROR.get(code, Unavailable if code == grpc.StatusCode.CANCELLED else EchoError)
    out = cls(f"{stage} stage: {code.name}: {details}")
    out.code = code if code in _CODE_TO_ERROR else out.code
    return out


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def grpc_errors(method: F) -> F:
    """Servicer decorator: EchoError -> its status; anything else -> INTERNAL, logged once with traceback."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except EchoError as e:
            await context.abort(e.code, e.message)
        except grpc.RpcError as e:  # a downstream stage failed and nobody translated it
            err = from_rpc_error(e, type(self).__name__)
            await context.abort(err.code, err.message)
        except Exception as e:  # a bug: keep serving, tell the caller
            log.exception("unhandled error in %s.%s", type(self).__name__, method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    return wrapper  # type: ignore[return-value]


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def task_group_error(group: BaseExceptionGroup) -> BaseException:
    """The error to raise for a failed task group: its first error, whose message names every other one.

    A TaskGroup raises an ExceptionGroup; re-raising only its first member would
    drop the rest, and callers (the CLI's one-line errors, gRPC statuses) expect
    one error of a known kind. So the first keeps its type (its gRPC status) and
    carries the others' messages.
    """
    errors = _leaves(group)
    first = errors[0]
    if len(errors) > 1:
        also = "; ".join(f"{type(e).__name__}: {e}" for e in errors[1:])
        first.args = (f"{first} (and {len(errors) - 1} more: {also})",)
    return first
