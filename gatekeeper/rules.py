"""Every rule id a decision can carry, with its one-line why (`gatekeeper rules`, in operator.rules_cmd).

tests/test_rules.py scans gatekeeper/ for rule ids (``rule="..."`` literals,
``RULE_* = "..."`` constants, ``rule = "..."`` class attributes and the
``flag-*``/``limit-*``/``compose-*`` f-string families) and fails if one is
missing here, so a new rule cannot ship without its explanation.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType
from typing import Final

RULES: Final = MappingProxyType(
    {
        "allowed": "the command passed every check and ran",
        # what was sent
        "no-command": "the SSH session carried no command (an interactive login)",
        "not-docker": "the command does not start with 'docker'",
        "subsystem-sftp": "an sftp subsystem request (sshd passes the sftp server's path as the command)",
        "shell-syntax": "shell syntax (; | & $ ` < > globs, unbalanced quotes) is never run by a shell here",
        "unknown-command": "docker has no such command",
        "blocked-subcommand": "the policy blocks this docker command ([commands] blocked)",
        "not-allowed-subcommand": "the command is not in the policy's [commands] allowed list",
        "no-grammar": "gatekeeper has no vetted grammar for this command, so it cannot allow it",
        "unknown-flag": "a flag docker does not define for this command",
        "unvetted-flag": "a real docker flag that gatekeeper does not vet, so it is refused",
        "csv-syntax": "a --mount/--opt style CSV value docker itself would parse differently",
        "inspect-format": "an inspect template where docker.host is not unix:// (no redacting stand-in)",
        # host paths
        "host-path": "a host path outside the policy's allowed_roots (or the root itself)",
        "host-path-hidden": "a host path whose first component below the root is a dot entry",
        "host-path-nested": "bind sources must stay disjoint: one below another can be swapped",
        "host-path-output": "a client output file (-o, --iidfile, ...) inside a directory a container binds",
        "host-path-special": "a host path that is a device, FIFO or socket",
        "host-path-mount": "a bind source on a mount without nosuid,nodev (root-planted setuid files)",
        "host-path-unreadable": "a host path gatekeeper cannot inspect, so it cannot vet it",
        "host-path-unresolved": "the engine could not say which host paths an object uses",
        "host-path-busy": "another command holds the same host paths right now",
        "host-path-state": "gatekeeper's state directory ([paths] state_dir) is missing or unsafe",
        # objects and ownership
        "scope-owned": "the command acts on an object another profile (or the operator) owns",
        "scope-unresolved": "the object named could not be resolved to exactly one owned object",
        "protected": "the policy protects this object from stop, rm, kill and restart",
        "prune-unscoped": "a prune that would reach objects the agent does not own",
        "reserved-label": "gatekeeper.* labels are set by gatekeeper only (also: a label file with a BOM)",
        "volume-backed": "a volume whose driver options bind host paths or devices",
        "foreign-volume": "an existing volume not the agent's (nor [shared]): someone else's data",
        "foreign-network": "a network not the agent's (nor [shared]), or an alias on one not its own",
        "foreign-link": "--link/external_links to a container not the agent's: its environment is copied",
        "name-prefix": "a name given without the [names] prefix: the operator's later work would land in it",
        "name-like-id": "a container/network name or image tag of hex digits only: read before an ID prefix",
        "foreign-tag": "a build or pull would re-point a tag naming an image the agent does not own",
        "refused-label": "a label other software acts on ([labels] refused), or a key not plain ASCII",
        "image-not-shared": "an image the agent neither built nor pulled, from no allowed registry, not "
                            "[images] shared",
        "image-labels-unchecked": "a container of an image not on the engine, or pulled anew: labels unseen",
        "top-arguments": "ps options for 'docker top' reach the host's ps, run as root",
        "step-failed": "an engine step gatekeeper takes before the command (a new volume) failed",
        "disk-budget": "the profile's images, volumes and build cache are at its [limits] disk_budget",
        "limit-restart": "restart always/on-failure under max_running: a daemon restart starts stopped "
                         "ones past the cap",
        # networks
        "network-subnet": "a network subnet, range or gateway outside the allowed ranges",
        "network-ipv6": "an IPv6 network (the engine turns on the host's IPv6 forwarding) without "
                        "[network] ipv6",
        "network-address": "a fixed IP or link-local address the policy does not allow",
        "network-ipam": "an IPAM driver or IPAM options gatekeeper does not vet",
        "network-mac": "a fixed MAC address (spoofing on the bridge)",
        "flag-driver": "a network driver other than bridge (macvlan, ipvlan, overlay, host)",
        "image-source": "an image not from a registry or repository of the policy's [images] allowed",
        "image-host-registry": "a pull from a registry on this host itself (loopback, link-local) "
                               "[images] host_registries does not name",
        "build-cache-key": "a build input left out of the steps' cache keys (--add-host, --network, "
                           "--ulimit, proxy args)",
        "build-buildkit": "docker buildx build: BuildKit, whatever DOCKER_BUILDKIT says (use docker build)",
        "build-add-url": "a Dockerfile ADD of a URL or git repository (fetched on the host's network), "
                         "a base image's too (ONBUILD)",
        "budget-commands": "the profile used its [budgets] commands_per_minute (says when it refills)",
        "budget-containers": "the profile used its [budgets] containers_per_hour",
        "budget-pulls": "the profile used its [budgets] pulls_per_day",
        "budget-builds": "the profile used its [budgets] builds_per_day",
        "approval-pending": "the policy asks an operator first ([approval] ask): exit 75 and a request id",
        "approval-denied": "the operator denied this request (gatekeeper deny ID)",
        "approved": "the command needed approval, the operator approved it, and it ran (once)",
        # build and compose
        "build-remote-context": "a build context fetched from a URL or git remote",
        "build-context-count": "a build needs exactly one local context",
        "build-context-changed": "a build context became a symlink or moved after the check (a swap)",
        "build-context-special": "a build context holding a FIFO, socket or device",
        "build-context-size": "a build context larger than gatekeeper copies (1 GiB, 100000 entries)",
        "compose-file": "a compose file too large, too many files, or not readable",
        "compose-no-file": "no compose file was found or named",
        "compose-model": "a compose file whose structure gatekeeper cannot vet",
        "compose-unknown-key": "a compose key gatekeeper does not vet",
        "compose-render": "compose could not render the project (or took too long)",
        "compose-build": "a compose build that is not a plain local context",
        "compose-render-file": "an absolute include/extends/env_file path (compose would reread it)",
        "compose-yaml-aliases": "a compose file whose YAML aliases expand past the bound (an alias bomb)",
        "compose-config-unfiltered": "'docker compose config' options that would print unvetted content",
        # the engine API (gatekeeper proxy)
        "api-endpoint": "an engine API endpoint the proxy does not know: only listed endpoints are forwarded",
        "api-unvetted": "an engine API endpoint no policy opens (exec, cp, export, push, swarm, plugins)",
        "api-path": "an API path with empty, '.' or '..' segments (the engine would route it elsewhere)",
        "api-version": "an API version before 1.24, whose request shapes the proxy does not vet",
        "api-query": "an API query parameter the endpoint does not list, one given twice, or a bad value",
        "api-body": "an API request body that is not the JSON the endpoint takes",
        "api-body-field": "a create/update body field the proxy does not vet, set to a non-default value",
        # the API layer's transport (gatekeeper proxy)
        "api-framing": "an HTTP request two parsers could read differently (duplicate headers, chunked...)",
        "api-body-size": "a request body over the proxy's cap ([proxy] max_body, max_build_context)",
        "api-content-type": "a request body sent as a form (the engine reads its pairs as query parameters)",
        "api-user": "the connecting unix user is not listed in [proxy.users]",
        "api-upstream": "the engine behind the proxy did not answer",
        "api-spool": "build contexts sent at once over [proxy] max_spool_per_user or max_spool",
        "api-connections": "more open connections to the proxy than [proxy] max_connections_per_user",
        "api-slow-client": "a request head or body not received within [proxy] header_timeout/body_timeout",
        "api-intake-rate": "audit records handed to the proxy over [proxy] intake_per_minute (summed up)",
        "api-request-rate": "requests of one uid over [proxy] request_rate and request_burst (summed up)",
        "api-busy": "a create of the same profile held the proxy's per-profile lock too long; try again",
        # gatekeeper itself
        "denied": "a refusal without a more specific rule",
        "policy-invalid": "the policy file is missing, unreadable or invalid (the operator must fix it)",
        "audit-unwritable": "the audit log cannot be written, so nothing runs (fail closed)",
        "audit-full": "the live audit log reached [audit] max_bytes: the proxy refuses until it is rotated",
        "audit-share-full": "a uid's records reached [audit] max_bytes_per_uid: refused until rotation",
        "decision-limit": "an engine or compose call made to decide went past its memory, time or output cap",
        "internal-error": "gatekeeper hit a bug; the command was refused (fail closed); see syslog",
    }
)

# Families: the id is the prefix followed by a flag name, a [limits] cap or a compose key.
FAMILIES: Final = MappingProxyType(
    {
        "flag-": "flag-NAME: the value given to --NAME is not allowed (e.g. flag-privileged, flag-network)",
        "limit-": "limit-CAP: a resource above the policy's [limits] cap (e.g. limit-memory, limit-running)",
        "compose-": "compose-KEY: a compose file key whose value is not allowed (e.g. compose-privileged)",
    }
)


def is_known(rule: str) -> bool:
    """A listed id, or a family prefix followed by a name."""
    if rule in RULES:
        return True
    return any(rule.startswith(prefix) and len(rule) > len(prefix) for prefix in FAMILIES)


def why(rule: str) -> str | None:
    if rule in RULES:
        return RULES[rule]
    for prefix, text in FAMILIES.items():
        if rule.startswith(prefix) and len(rule) > len(prefix):
            return text
    return None


def suggestion(rule: str) -> str | None:
    close = difflib.get_close_matches(rule, list(RULES), n=1, cutoff=0.6)
    return close[0] if close else None
