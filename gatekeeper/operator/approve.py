"""`gatekeeper approve ID`, `gatekeeper deny ID`, `gatekeeper approve --list`: the
operator's side of [approval] (gatekeeper.approval). Run as root: approvals go into
[approval] dir, which must be root's and writable by nobody else (the agent reads them,
never writes them). Each step is an audit record (event "approval")."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from gatekeeper.approval import REQUESTS, approval_key, request_id
from gatekeeper.errors import EX_CONFIG
from gatekeeper.policy import Policy, load_policy

EX_NOINPUT = 66
EXAMPLES = """\
examples:
  gatekeeper approve --list
  gatekeeper approve 3f2a9c0d1e4b5a67
  gatekeeper deny 3f2a9c0d1e4b5a67
"""


def approve_main(argv: list[str]) -> int:
    options = parse_args("approve", argv)
    policy = policy_of(options)
    if options.list:
        return list_requests(policy)
    if options.id is None:
        sys.stderr.write("gatekeeper approve: give a request ID (or --list)\n")
        return 64
    return decide_request(policy, options.id, approve=True)


def deny_main(argv: list[str]) -> int:
    options = parse_args("deny", argv)
    if options.id is None:
        sys.stderr.write("gatekeeper deny: give a request ID\n")
        return 64
    return decide_request(policy_of(options), options.id, approve=False)


def parse_args(name: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"gatekeeper {name}", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", help="policy file (default: /etc/gatekeeper/policy.toml if present)")
    if name == "approve":
        parser.add_argument("--list", action="store_true", help="list the pending requests")
    parser.add_argument("id", nargs="?", help="the request id the agent was given")
    return parser.parse_args(argv)


def policy_of(options: argparse.Namespace) -> Policy:
    from gatekeeper.operator.policy_cmd import default_policy

    return load_policy(options.policy or default_policy())


def requests_dir(policy: Policy) -> str:
    return os.path.join(policy.state_dir, REQUESTS)


def pending(policy: Policy) -> list[dict[str, object]]:
    found = []
    try:
        names = sorted(os.listdir(requests_dir(policy)))
    except FileNotFoundError:
        return []
    for name in names:
        request = read_request(policy, name)
        if request is not None:
            found.append(request)
    return found


def read_request(policy: Policy, request: str) -> dict[str, object] | None:
    if len(request) != 16 or any(c not in "0123456789abcdef" for c in request):
        return None
    path = os.path.join(requests_dir(policy), request)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        record = json.loads(os.read(fd, 1 << 20))
    except ValueError:
        return None
    finally:
        os.close(fd)
    if not isinstance(record, dict) or not isinstance(record.get("argv"), list):
        return None
    # The key is recomputed from what is shown: the operator approves exactly that argv.
    record["key"] = approval_key(record["argv"], str(record.get("profile")), str(record.get("policy_sha256")))
    return record if request_id(record["key"]) == request else None


def list_requests(policy: Policy) -> int:
    requests = pending(policy)
    if not requests:
        print("no pending requests")
    for request in requests:
        age = round(time.time() - float(request.get("asked", 0)))  # type: ignore[arg-type]  # a JSON number ours wrote
        print(f"{request_id(str(request['key']))}  profile {request.get('profile')}  {age} s ago  "
              f"{json.dumps(request['argv'])}")
    return 0


def decide_request(policy: Policy, request: str, *, approve: bool) -> int:
    record = read_request(policy, request)
    verb = "approve" if approve else "deny"
    if record is None:
        sys.stderr.write(f"gatekeeper {verb}: no pending request {request!r} "
                         "('gatekeeper approve --list' shows them)\n")
        return EX_NOINPUT
    if record.get("policy_sha256") != policy.sha256:
        sys.stderr.write(f"gatekeeper {verb}: request {request} was made under another policy "
                         f"({record.get('policy_sha256')}); the agent must ask again\n")
        return EX_CONFIG
    approval = approval_record(policy, record, approve=approve)
    write_approval(policy, str(record["key"]), approval)
    os.unlink(os.path.join(requests_dir(policy), request))
    audit_step(policy, verb, request, record, approval)
    what = "approved: the agent may run it once" if approve else "denied"
    print(f"{what}: {json.dumps(record['argv'])} (profile {record.get('profile')}); "
          f"until {time.strftime('%H:%M:%S UTC', time.gmtime(float(approval['expires'])))}")  # type: ignore[arg-type]  # a float
    return 0


def approval_record(policy: Policy, request: dict[str, object], *, approve: bool) -> dict[str, object]:
    import secrets

    from gatekeeper.units import go_duration

    lifetime = (go_duration(policy.approval_expires) or 0) / 1e9
    now = time.time()
    record: dict[str, object] = {
        "key": request["key"], "argv": request["argv"], "profile": request.get("profile"),
        "policy_sha256": policy.sha256, "at": now, "expires": now + lifetime,
        "by": os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid()),
        "nonce": secrets.token_hex(16),
    }  # fmt: skip
    if not approve:
        record["denied"] = True
    return record


def write_approval(policy: Policy, key: str, record: dict[str, object]) -> None:
    """Atomically, mode 0644, into the root-owned directory (created 0755 if missing)."""
    import tempfile

    directory = policy.approvals_dir
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".approval-", dir=directory)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record))
            os.fchmod(handle.fileno(), 0o644)
        os.replace(temporary, os.path.join(directory, key))
    except BaseException:
        os.unlink(temporary)
        raise


def audit_step(policy: Policy, verb: str, request: str, record: dict[str, object],
               approval: dict[str, object]) -> None:
    from gatekeeper.audit import RECORD_VERSION, append_record, timestamp, to_syslog

    entry = {
        "v": RECORD_VERSION, "ts": timestamp(), "event": "approval", "action": verb, "request": request,
        "profile": record.get("profile"), "argv": record["argv"], "by": approval["by"],
        "expires": timestamp(float(approval["expires"])),  # type: ignore[arg-type]  # a float, set above
        "policy": {"path": policy.source, "sha256": policy.sha256},
    }  # fmt: skip
    line = append_record(policy.audit_path, entry)
    if policy.syslog:
        to_syslog(line)
