"""Output conventions: data on stdout, messages and progress on stderr.

Rich adds colour, spinners and progress bars only when the stream is a terminal; piped or redirected
output stays plain (and NO_COLOR is honoured by Rich itself): no ANSI codes, no animation, one plain line
per stage, so a log shows what a long command is doing. Nothing is cut to a width when the stream is not
a terminal: a pipe has no width, and Rich's default of 80 columns would wrap or truncate data.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager

from rich.console import Console, ConsoleDimensions
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

# Width given to tables and messages written to a pipe or a file: wide enough that nothing is wrapped or
# cut, as if there were no width at all (tables are only as wide as their content).
PIPE_WIDTH = 1_000_000


class _Console(Console):
    """A Console that is as wide as its terminal, and unlimited when it writes to a pipe or a file."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size) -> None:  # Console's own setter, kept for Rich's callers
        Console.size.fset(self, new_size)


err = _Console(stderr=True, highlight=False)
out = _Console(highlight=False, soft_wrap=True)


def print_json(data) -> None:
    """Machine output on stdout, one JSON document."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def message(text: str) -> None:
    """One line on stderr, printed as it is (no markup or emoji codes: the text may carry user data)."""
    err.print(text, markup=False, highlight=False, emoji=False)


def data(text: str) -> None:
    """Text output on stdout, byte for byte as given, then a newline."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def progress(transient: bool = True) -> Progress:
    """A progress bar on stderr; invisible (and free of ANSI codes) when stderr is not a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    )


@contextmanager
def stage(description: str):
    """One stage of a long command: a spinner with the elapsed time on a terminal; on a pipe a plain line
    when it starts. Either way a line with its duration when it ends."""
    t0 = time.perf_counter()
    if err.is_terminal:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            bar.add_task(description, total=None)
            yield
    else:
        message(f"{description} ...")
        yield
    message(f"{description}: {time.perf_counter() - t0:.1f} s")
