"""Output conventions: data on stdout, messages and progress on stderr.

Rich adds colour and progress bars only when stderr is a terminal; piped or
redirected output stays plain (and NO_COLOR is honoured by Rich itself).
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def print_json(data) -> None:
    """Machine output on stdout, one JSON document."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
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
