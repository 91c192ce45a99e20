#!/usr/bin/env bash
# Put this machine back into the state of a fresh Debian 12 (as after a reboot, with the
# apt packages kept): everything `./run demo`, `./run test` and .ci/e2e-setup.sh create
# outside the checkout is removed, so a missing set-up step fails CI instead of a user's
# first try (issue 11). Safe to run when none of it exists.
#
# Only what the stack itself creates is removed: the apt packages stay, and so does the
# `docker` group unless the stack had to create it (docker.io's postinst normally does).
# It is meant for CI and throwaway machines: it removes the production paths the stack
# deploys to (/etc/gatekeeper, the ai-worker account, ...), and refuses to when
# /etc/gatekeeper/policy.toml is not the stack's own (a real deployment lives here).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-state: run as root" >&2
  exit 1
fi

AGENT=ai-worker
STACK_POLICY_HEADER="# Written by tests/e2e/stack.py"
POLICY=/etc/gatekeeper/policy.toml
if [ -e "$POLICY" ] && [ "$(head -n 1 "$POLICY")" != "$STACK_POLICY_HEADER: the production layout, with a private engine." ] \
   && [ -z "${GK_FRESH_STATE_FORCE:-}" ]; then
  echo "fresh-state: $POLICY is not the test stack's: this looks like a real deployment; refusing" >&2
  echo "fresh-state: (GK_FRESH_STATE_FORCE=1 removes it anyway)" >&2
  exit 1
fi

say() { echo "fresh-state: $*"; }

# 1. A run that was killed: its daemons (by pidfile and command line), engine processes,
#    mounts under our directories, the engine's bridges, the PAM edit. Stack code, so the
#    rules of what is ours live in one place (tests/e2e/stack.py, stop_stale_stack).
if [ -d /run/gk-e2e ] || [ -d /var/lib/gk-e2e ]; then
  /usr/bin/python3 -m tests.e2e.stack clean
fi

# 1b. The neighbour engine of tests/e2e/test_beside_other_engine.py, if its run was killed:
#     mounts below its own directories, and docker0 only while it is still the link that
#     test created (the marker holds its ifindex; any other docker0 is another engine's).
neighbour_marker=/var/lib/gk-e2e-state/neighbour-docker0
if [ -f "$neighbour_marker" ]; then
  awk '{print $2}' /proc/self/mounts | grep -E '^/(run|var/lib)/gk-neighbour(/|$)' | sort -r |
    xargs -r -n 1 umount -l
  if [ "$(cat /sys/class/net/docker0/ifindex 2>/dev/null)" = "$(cat "$neighbour_marker")" ]; then
    say "deleting docker0 left by a killed neighbour-engine test"
    ip link delete dev docker0
  fi
  rm -rf /run/gk-neighbour /var/lib/gk-neighbour "$neighbour_marker"
fi

# 2. Run-time and engine state (images live in the data root).
rm -rf /run/gk-e2e /var/lib/gk-e2e /tmp/gk-e2e-markers
rm -rf /tmp/gk-src-* /tmp/gk-image-*
if pgrep -x sshd >/dev/null; then
  say "an sshd is running: /run/sshd is its privilege separation directory, kept"
else
  rm -rf /run/sshd
fi

# 3. The deployment the stack makes the way the README says.
if [ -e /var/log/gatekeeper/audit.jsonl ]; then
  chattr -a /var/log/gatekeeper/audit.jsonl 2>/dev/null || true  # append-only attribute
fi
rm -rf /etc/gatekeeper /var/log/gatekeeper
rm -f "/etc/ssh/authorized_keys/$AGENT"
rmdir /etc/ssh/authorized_keys 2>/dev/null || true
rm -rf /opt/gatekeeper /opt/docker-compose
plugin=/usr/local/lib/docker/cli-plugins/docker-compose
if [ -L "$plugin" ] && [[ "$(readlink "$plugin")" == /opt/docker-compose/* ]]; then
  rm -f "$plugin"
fi
rmdir /usr/local/lib/docker/cli-plugins /usr/local/lib/docker 2>/dev/null || true

# Files the install steps (sshd_snippets/) place: removed only while they are still our copies.
remove_if_ours() {  # installed path, repository source
  if [ -f "$1" ] && [ -f "$2" ] && cmp -s "$1" "$2"; then
    rm -f "$1"
  fi
}
remove_if_ours /etc/tmpfiles.d/gatekeeper.conf sshd_snippets/tmpfiles-gatekeeper.conf
remove_if_ours /etc/logrotate.d/gatekeeper sshd_snippets/logrotate-gatekeeper
remove_if_ours /etc/ssh/sshd_config.d/00-gatekeeper.conf sshd_snippets/00-gatekeeper.conf
# The proxy's unit (install.sh step proxy), its enable link, and its runtime directory
# (systemd's RuntimeDirectory; the stack makes it itself, no systemd here).
proxy_unit=/etc/systemd/system/gatekeeper-proxy.service
wants=/etc/systemd/system/multi-user.target.wants/gatekeeper-proxy.service
if [ -L "$wants" ] && [ "$(readlink "$wants")" = "$proxy_unit" ]; then
  rm -f "$wants"
fi
remove_if_ours "$proxy_unit" sshd_snippets/gatekeeper-proxy.service
rm -rf /run/gatekeeper /run/gatekeeper-resident  # the resident pool's sockets too
for deny in /etc/cron.deny /etc/at.deny; do  # the agent's line only; a file left empty was ours
  if [ -f "$deny" ] && grep -qx "$AGENT" "$deny"; then
    sed -i "/^$AGENT\$/d" "$deny"
    [ -s "$deny" ] || rm -f "$deny"
  fi
done

# 4. The agent account and its home; the docker group only if the stack created it.
#    First the install step area-mount's bind of the home onto itself and its fstab line.
while findmnt -n --mountpoint "/home/$AGENT" >/dev/null 2>&1; do
  umount -l "/home/$AGENT" || break
done
if [ -f /etc/fstab ]; then
  sed -i "\\|^/home/$AGENT /home/$AGENT none bind,nosuid,nodev 0 0\$|d" /etc/fstab
fi
if getent passwd "$AGENT" >/dev/null; then
  unit="/etc/systemd/system/user@$(id -u "$AGENT").service"  # masked user manager
  if [ -L "$unit" ] && [ "$(readlink "$unit")" = /dev/null ]; then
    rm -f "$unit"
  fi
  rm -f "/var/lib/systemd/linger/$AGENT"
  userdel --remove "$AGENT" 2>/dev/null || userdel "$AGENT"
fi
rm -rf "/home/$AGENT"
if getent group "$AGENT" >/dev/null; then
  groupdel "$AGENT"
fi
if [ -e /var/lib/gk-e2e-state/created-group-docker ] && getent group docker >/dev/null; then
  groupdel docker
fi
rm -rf /var/lib/gk-e2e-state

say "ok"
