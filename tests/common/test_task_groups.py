"""A failed task group reports every error: the first keeps its kind, the others ride in its message."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import InvalidArgument, Unavailable, task_group_error


async def _fail(exc: Exception) -> None:
    await asyncio.sleep(0)
    raise exc


async def test_every_error_of_a_failed_task_group_reaches_the_caller() -> None:
    with pytest.raises(InvalidArgument) as caught:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_fail(InvalidArgument("is empty", field="line_id")))
                tg.create_task(_fail(Unavailable("knowledge stage: UNAVAILABLE: connection refused")))
        except BaseExceptionGroup as group:
            raise task_group_error(group) from None
    message = str(caught.value)
    assert message.startswith("line_id: is empty")
    assert "Unavailable: knowledge stage: UNAVAILABLE: connection refused" in message


def test_a_single_error_is_raised_unchanged() -> None:
    err = Unavailable("decision stage down")
    assert task_group_error(BaseExceptionGroup("g", [err])) is err and str(err) == "decision stage down"
