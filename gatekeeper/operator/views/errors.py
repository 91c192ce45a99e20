"""Errors the operator views report: each carries its exit status.

``audit_main`` and ``replay_main`` are the one boundary that turns them into
a line on stderr.
"""

from __future__ import annotations

import errno
import os

from gatekeeper.errors import GatekeeperError


class ViewError(GatekeeperError):
    """The project's one error base (gatekeeper.errors), with the views' exit statuses."""

    exit_code = 1


class UsageError(ViewError):
    exit_code = 2


class NoInput(ViewError):
    exit_code = os.EX_NOINPUT  # 66

    @classmethod
    def from_os_error(cls, error: OSError) -> NoInput:
        if error.filename is None:
            return cls(f"input/output error: {error.strerror or error}")
        hint = " (the audit log is readable by root only)" if error.errno == errno.EACCES else ""
        return cls(f"cannot read {error.filename}: {error.strerror}{hint}")


class BadPolicy(ViewError):
    exit_code = os.EX_CONFIG  # 78
