"""Progress bars for long loops: live on a terminal, a line every few seconds in logs (kfp.local, pods)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")
INTERVAL_ENV = "WAKELINE_PROGRESS_INTERVAL_S"


class _Lines:
    """Off a terminal, each tqdm refresh (written as '\\r' + state, no newline) becomes a line of its own, so a
    log, or kfp.local reading a task's output line by line, gets each update when it happens."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        state = text.replace("\r", "").rstrip()
        if state:
            self.stream.write(state + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool = False) -> Iterable[T]:
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                file=sys.stderr if interactive else _Lines(sys.stderr),
                mininterval=0.2 if interactive else log_interval_s(), dynamic_ncols=interactive,
                ascii=not interactive)


def log_interval_s() -> float:
    """Seconds between progress lines off a terminal: $WAKELINE_PROGRESS_INTERVAL_S (wakeline run sets it for
    its live progress bars), else 10."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, "10"))
    except ValueError:
        return 10.0
    return value if 0 < value < float("inf") else 10.0
