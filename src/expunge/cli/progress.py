"""Rich progress bars and error handling shared by the CLI commands."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from expunge.errors import ExpungeError

console = Console(width=None if sys.stdout.isatty() else 160)
error_console = Console(stderr=True)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input ends the command with one red line and exit code 2, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ExpungeError as error:
            # escape: a message may hold brackets that are not markup (pip install 'expunge[ray]')
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def progress_bars() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Yields ``task(description) -> callback(done, total)`` driving one bar per task."""
    with Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as bars:
        def task(description: str) -> Callable[[int, int], None]:
            task_id = bars.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                bars.update(task_id, completed=done, total=total)

            return update

        yield task
