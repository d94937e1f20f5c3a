"""Progress bars for long loops: live on a terminal, a line every few seconds in logs (kfp.local, pods)."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool = False) -> Iterable[T]:
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                mininterval=0.2 if interactive else 10.0, dynamic_ncols=interactive, ascii=not interactive)
