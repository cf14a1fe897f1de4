"""Progress bars: one library (rich) for every long job, on stderr so stdout keeps only results."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def bar_columns(*extra: Any) -> tuple[Any, ...]:
    """The columns of every bar: description, bar, done/total, `extra` (e.g. a rate), elapsed time, ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A bar with count, elapsed time and ETA; yields `advance(n)`. Disabled: nothing is drawn."""
    from rich.console import Console
    from rich.progress import Progress

    with Progress(*bar_columns(), console=Console(stderr=True), disable=not enabled) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
