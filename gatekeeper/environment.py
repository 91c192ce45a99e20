"""The process's environment, read without importing os.

`import os` costs the ForceCommand about 0.9 ms per call (it builds os.environ and
imports _collections_abc, stat and posixpath), and the interpreter's -S start does not
import it. The hot path takes the system calls it needs from the built-in `posix`
module, which os re-exports, and its environment variables from here.

os.environ is a view of `posix.environ` (its `_data`), decoded with the file system
encoding and surrogateescape, and os's setters update that dictionary too: so this
reads exactly what os.environ would, whether or not os was imported since.
"""

from __future__ import annotations

import posix
import sys


def getenv(name: str) -> str | None:
    """os.environ.get(name)."""
    encoding = sys.getfilesystemencoding()
    value = posix.environ.get(name.encode(encoding, "surrogateescape"))
    return None if value is None else value.decode(encoding, "surrogateescape")
