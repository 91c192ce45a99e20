"""Each uid's share of the live audit log ([audit] max_bytes_per_uid).

[audit] max_bytes is one ceiling for the whole live log: one account flooding up to it stopped
every account until the log was rotated. The proxy writes every record of the log (via_proxy),
so it counts the bytes each uid's records take in the live log, and refuses a record that
would take its uid past the share (AuditShareFull, rule audit-share-full): the flooding
account stops, the others go on. max_bytes stays the last bound.

    over_share(used, size, share) -> bool        the decision (pure)
    LogShares.charger(uid, share)                 the hook gatekeeper.audit.write_record calls
                                                  under the log's lock with the file's identity
                                                  (st_dev, st_ino) and size

The count follows the live log: a new file (a rotation renames it: another inode) or a
shorter one (copytruncate) starts every uid at zero. It is the proxy's memory: a restart of
the proxy (root's act, never the agent's) starts the shares at zero too; the ceiling still holds.
Summary records (a flood's one record a minute) are not charged: they say what was refused.
"""

from __future__ import annotations

import threading

from gatekeeper.errors import AuditShareFull

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.audit import Charge

ROTATE = "logrotate -f /etc/logrotate.d/gatekeeper"


def over_share(used: int, size: int, share: int) -> bool:
    """Whether a record of `size` bytes takes a uid that has `used` bytes past `share` (0: none)."""
    return share > 0 and used + size > share


def refusal(uid: int, used: int, share: int) -> AuditShareFull:
    return AuditShareFull(f"uid {uid}'s share of the audit log is used up ({used} bytes of [audit] "
                          f"max_bytes_per_uid = {share} in the live log); this account's requests are "
                          f"refused until the operator rotates the log ({ROTATE}); other accounts go on")


class LogShares:
    """Bytes of each uid's records in the live log, as the proxy wrote them."""

    __slots__ = ("lock", "log", "end", "used")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # records are written from the loop and from worker threads
        self.log: tuple[int, int] | None = None  # (st_dev, st_ino) of the live log counted
        self.end = 0  # its size after the last record counted
        self.used: dict[int, int] = {}

    def charger(self, uid: int, share: int) -> Charge | None:
        """The hook for one record of `uid` (None: no share, nothing to count)."""
        if share <= 0:
            return None
        return lambda ident, end, size: self.charge(uid, share, ident, end, size)

    def charge(self, uid: int, share: int, ident: tuple[int, int], end: int, size: int) -> None:
        """Count `size` bytes for `uid` in the log `ident` (st_dev, st_ino), `end` bytes long,
        or raise AuditShareFull (nothing counted)."""
        with self.lock:
            self.follow(ident, end)
            used = self.used.get(uid, 0)
            if over_share(used, size, share):
                # Stops: one account's flood taking the whole log, so that every account is
                # refused (audit-full) until the operator rotates it.
                raise refusal(uid, used, share)
            self.used[uid] = used + size
            self.end = end + size

    def follow(self, ident: tuple[int, int], end: int) -> None:
        """A rotated (another file) or truncated log starts every count at zero."""
        if ident != self.log or end < self.end:
            self.log, self.used = ident, {}
        self.end = end
