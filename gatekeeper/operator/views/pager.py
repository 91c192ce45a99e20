"""A pager on a terminal, the way journalctl does it; never in a pipe.

``$GATEKEEPER_PAGER``, else ``$PAGER``, else ``less``; an empty value or
``cat`` means none. ``less`` gets ``LESS=FRSXMK`` unless the operator set
``$LESS``: quit if one screen (-F), raw colours (-R), chop long lines (-S),
no termcap init (-X), long prompt (-M), quit on ^C (-K).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import TextIO

DEFAULT_PAGER = "less"
DEFAULT_LESS = "FRSXMK"


def pager_command(environ: dict[str, str] | os._Environ[str]) -> list[str] | None:
    """The pager to run, or None for none."""
    chosen = environ.get("GATEKEEPER_PAGER", environ.get("PAGER", DEFAULT_PAGER))
    words = shlex.split(chosen) if chosen.strip() else []
    if not words or words == ["cat"]:
        return None
    return words


@contextlib.contextmanager
def paged(use_pager: bool) -> Iterator[TextIO]:
    """Standard output, or the input of a pager when ``use_pager`` and stdout is a terminal.

    When the reader quits the pager, writing raises BrokenPipeError: the caller
    stops quietly (see audit.quiet_broken_pipe).
    """
    command = pager_command(os.environ) if use_pager and sys.stdout.isatty() else None
    if command is None:
        yield sys.stdout
        return
    environment = dict(os.environ)
    environment.setdefault("LESS", DEFAULT_LESS)
    environment.setdefault("LESSCHARSET", "utf-8")
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, env=environment)
    except OSError:
        yield sys.stdout  # no such pager: write directly, as journalctl does
        return
    pipe = process.stdin
    if pipe is None:  # never: stdin=PIPE
        yield sys.stdout
        return
    stream = io.TextIOWrapper(pipe, encoding="utf-8", errors="backslashreplace")
    try:
        yield stream
        with contextlib.suppress(BrokenPipeError):
            stream.close()
    except (BrokenPipeError, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            stream.close()
    finally:
        process.wait()
