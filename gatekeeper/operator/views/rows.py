"""What an operator sees of one event: display fields, already escaped.

Both the plain-text and the rich renderers draw from ``Row``, so escaping
happens in exactly one place and no renderer ever sees a raw agent string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from gatekeeper.operator.views.escape import shown
from gatekeeper.operator.views.filters import record_time
from gatekeeper.operator.views.records import Event, Record, text_field

COMMAND_LIMIT: Final = 240
FIELD_LIMIT: Final = 120
NONE_LABEL: Final = "-"


@dataclass(frozen=True)
class Row:
    time: str
    key: str
    client: str
    decision: str  # "allow", "deny" or the escaped odd value
    canonical: str
    command: str
    why: str
    outcome: str
    profile: str = NONE_LABEL

    @property
    def denied(self) -> bool:
        return self.decision != "allow"


def row_of(event: Event) -> Row:
    record = event.decision
    return Row(
        time=time_label(record),
        key=shown(text_field(record, "key"), FIELD_LIMIT) or "no-key",
        client=shown(text_field(record, "client").split(" ", 1)[0], FIELD_LIMIT) or "no-client",
        decision=shown(text_field(record, "decision"), FIELD_LIMIT),
        canonical=shown(text_field(record, "canonical"), FIELD_LIMIT) or NONE_LABEL,
        command=shown(exact_command(record), COMMAND_LIMIT),
        why=why_label(record),
        outcome=outcome_label(event.exit),
        profile=shown(text_field(record, "profile"), FIELD_LIMIT) or NONE_LABEL,
    )


def exact_command(record: Record) -> str:
    """The command with its exact bytes when the record has ``cmd_b64`` (shown as \\xFF by ``shown``)."""
    if "cmd_b64" in record:
        from gatekeeper.audit import command_bytes

        exact = command_bytes(record)
        if exact is not None:
            return exact
    return text_field(record, "cmd")


def time_label(record: Record) -> str:
    moment = record_time(record)
    if moment is None:
        return shown(text_field(record, "ts"), 32) or NONE_LABEL
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def why_label(record: Record) -> str:
    rule = shown(text_field(record, "rule"), FIELD_LIMIT)
    reason = shown(text_field(record, "reason"), FIELD_LIMIT)
    return f"{rule}: {reason}" if reason else rule


def outcome_label(exit_record: Record | None) -> str:
    if exit_record is None:
        return ""
    status = shown(text_field(exit_record, "exit"), 12)
    duration = exit_record.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        return f"exit {status} {duration_label(duration)}"
    return f"exit {status}"


def duration_label(milliseconds: float) -> str:
    return f"{milliseconds:.0f}ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f}s"


def with_exit(event: Event) -> Record:
    """The decision record for JSON output, with its exit status merged in."""
    if event.exit is None:
        return event.decision
    return {
        **event.decision,
        "exit": event.exit.get("exit"),
        "duration_ms": event.exit.get("duration_ms"),
    }


def json_line(record: Record) -> str:
    """Compact JSON, pure printable ASCII: escapes, bidi and bad bytes come out as \\uXXXX."""
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))
