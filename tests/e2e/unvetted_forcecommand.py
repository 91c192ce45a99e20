"""TEST ONLY, NEVER INSTALL: a ForceCommand that vets nothing at all.

Layout (b) of issue 12 item 3 (tests/e2e/stack.py, PROXY_ALONE): the CLI layer is
switched off entirely, so that the attack suite proves the API layer (`gatekeeper
proxy`) confines the agent on its own. Whatever `docker ...` command arrives is
split like a shell would (quotes only) and run with the real docker CLI, with every
global option, plugin and config file the agent asks for; the only way to the engine
is the proxy's socket, because the agent's account is in no group that owns the
engine's. Its environment is the agent's own: HOME is the agent's home, so the CLI
reads ~/.docker like a shell as the agent would.

The stack copies this file to a root-owned place and names it on the ForceCommand
line of a third sshd: `python3 -I FILE DOCKER_HOST DOCKER_BINARY`. sshd_snippets/
install.sh never installs it (tests/test_unvetted_forcecommand.py checks).
"""

from __future__ import annotations

import os
import shlex
import sys

HOME = "/home/ai-worker"


def main(argv: list[str]) -> int:
    host, binary = argv[1], argv[2]
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        words = shlex.split(command)
    except ValueError as error:
        print(f"unvetted: {error}", file=sys.stderr)
        return 64
    if not words or words[0] != "docker":
        print("unvetted: only docker commands (nothing here is vetted)", file=sys.stderr)
        return 64
    # DOCKER_BUILDKIT=0 (COMPOSE_BAKE=false): the proxy serves no BuildKit gRPC tunnel; a shell on it
    # sets the same.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "DOCKER_HOST": host, "LANG": "C.UTF-8",
           "USER": os.environ.get("USER", "ai-worker"), "DOCKER_BUILDKIT": "0",
           "COMPOSE_BAKE": "false"}  # fmt: skip
    os.chdir(HOME)
    os.execve(binary, [binary, *words[1:]], env)  # noqa: S606 (argv, no shell: the point)
    return 70  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
