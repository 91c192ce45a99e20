#!/usr/bin/env bash
# Install what the end-to-end suite and `./run demo` need on Debian 12, as root.
# Idempotent and non-interactive: apt runs only when a package is missing.
# Services are not started by the packages (policy-rc.d): the suite starts its
# own private sshd and dockerd.
set -euo pipefail

PACKAGES=(
  docker.io          # dockerd 20.10 + containerd + runc, and a docker client
  openssh-server     # sshd under test
  openssh-client     # ssh, scp, sftp, ssh-keygen, ssh-agent
  busybox-static     # the test image's only binary
  nix-bin            # nix-instantiate --parse for the NixOS module
  python3-venv       # /usr/bin/python3 -m venv /opt/gatekeeper
  logrotate          # the audit log's rotation, run for real by test_audit_append_only
  iproute2           # ip: the private engine's own bridge (gk-e2e0)
  procps
  gcc                # tests/e2e/garp.c (test_operator_leaks), gatekeeper-ssh-resident (install-entry --resident)
  libc6-dev
  ca-certificates    # pip to PyPI
)

if [ "$(id -u)" -ne 0 ]; then
  echo "e2e-setup: run as root" >&2
  exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "e2e-setup: installing ${missing[*]}"
  created_policy_rc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy_rc=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$created_policy_rc" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
fi

for program in /usr/sbin/sshd /usr/sbin/dockerd /bin/busybox /usr/bin/ssh /usr/bin/nix-instantiate /usr/bin/python3; do
  if [ ! -x "$program" ]; then
    echo "e2e-setup: $program missing after install" >&2
    exit 1
  fi
done
echo "e2e-setup: ok"
