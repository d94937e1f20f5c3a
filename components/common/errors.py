"""The one kind of error a user can fix: what was given is missing, of the wrong kind, or not usable.

Its message names the thing and says what to do. The CLI prints it on one or two lines without a traceback
and exits 2; every other exception is a fault of wakeline (exit 3, traceback in a log file).
"""
from __future__ import annotations


class InputError(Exception):
    """An ordinary mistake in a path, a file, a value or the environment asked for (a cluster, Docker)."""
