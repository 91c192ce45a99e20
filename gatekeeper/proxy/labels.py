"""Labels in API bodies: the CLI layer's label rules (gatekeeper.vetting.ownership
check_label: nothing under gatekeeper., nothing [labels] refused, printable ASCII
keys), then the caller's owner label added to what the engine creates."""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.vetting.ownership import OWNER_LABEL, check_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.proxy.vet import Call


def owner_labelled(call: Call, labels: object, what: str) -> dict[str, str]:
    """The agent's labels, checked, with `gatekeeper.owner=<profile>` set.

    The caller's own owner label is accepted as given (the CLI layer, deployed in front of
    the proxy, sends the label it injected); any other value of it is refused like every
    other gatekeeper.* label."""
    if labels is None:
        labels = {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise Denied(f"{what}s must be a map of strings", rule="api-body")
    for key, value in labels.items():
        if key == OWNER_LABEL and value == call.profile:
            continue
        check_label(call.ctx, f"{key}={value}", what)  # type: ignore[arg-type]
    return {**labels, OWNER_LABEL: call.profile}
