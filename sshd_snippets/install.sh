#!/bin/sh
# Install gatekeeper on Debian 12, as root. Every step is idempotent and checks
# its own result; run them in this order (the README's install section does):
#
#   sh sshd_snippets/install.sh packages account area-mount pam gatekeeper policy audit-log \
#       logrotate proxy resident keys-dir sshd no-user-manager no-cron-at
#   ... add keys to /etc/ssh/authorized_keys/ai-worker ...
#   sh sshd_snippets/install.sh reload
#
# tests/e2e/stack.py runs the same steps on the test machine (see INSTALL_STEPS there).
set -eu

AGENT=ai-worker
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
SOURCE=${GATEKEEPER_SOURCE:-$(dirname -- "$HERE")}
VENV=/opt/gatekeeper
LOG_DIR=${GATEKEEPER_LOG_DIR:-/var/log/gatekeeper}
LOG=$LOG_DIR/audit.jsonl
POLICY=/etc/gatekeeper/policy.toml
SSHD_DIR=${GATEKEEPER_SSHD_DIR:-/etc/ssh}
DROP_IN=$SSHD_DIR/sshd_config.d/00-gatekeeper.conf
UNIT_DIR=${GATEKEEPER_UNIT_DIR:-/etc/systemd/system}
PROXY_UNIT=gatekeeper-proxy.service
# [proxy] listen's default, in the unit's RuntimeDirectory (/run/gatekeeper)
PROXY_SOCKET=/run/gatekeeper/docker.sock
RESIDENT_UNIT=gatekeeper-resident.service
RESIDENT_DIR=/run/gatekeeper-resident # the unit's RuntimeDirectory, gatekeeper.resident's SOCKET_DIRECTORY
# gcc and libc6-dev: step resident compiles the ForceCommand's client on this machine
PACKAGES="docker.io openssh-server python3-venv logrotate e2fsprogs procps gcc libc6-dev"

die() {
    echo "install.sh: $*" >&2
    exit 1
}

step_packages() {
    missing=""
    for package in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $package"
    done
    if [ -n "$missing" ]; then
        apt-get update -qq
        # shellcheck disable=SC2086 # one word per package
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
}

# /bin/sh (dash): sshd runs the forced command as `$SHELL -c`, and bash or zsh
# would read rc files the agent can write. No group that owns the engine's socket
# (docker: root-equivalent): the agent reaches the engine only through gatekeeper
# proxy's socket (step proxy), which the account's own group owns.
step_account() {
    if id "$AGENT" >/dev/null 2>&1; then
        usermod -s /bin/sh "$AGENT"
    else
        useradd -m -d "/home/$AGENT" -s /bin/sh "$AGENT"
    fi
    if id -nG "$AGENT" | tr ' ' '\n' | grep -qx docker; then
        gpasswd -d "$AGENT" docker >/dev/null # open sessions keep it: step reload ends them
    fi
    [ "$(getent passwd "$AGENT" | cut -d: -f7)" = /bin/sh ] || die "$AGENT's shell is not /bin/sh"
    ! id -nG "$AGENT" | tr ' ' '\n' | grep -qx docker || die "$AGENT is still in group docker"
}

# The agent's home, its allowed root, as a mount of its own with nosuid,nodev. Root in
# the agent's containers can chown/chmod 4755 or mknod inside a bind source; on this
# mount a set-user-ID program or a device node left there is inert for the host, for
# as long as the mount stands (gatekeeper refuses bind sources on any other mount).
step_area_mount() {
    area=/home/$AGENT
    [ -d "$area" ] || die "$area does not exist (run the account step first)"
    if ! findmnt -n --mountpoint "$area" >/dev/null; then
        mount --bind "$area" "$area"
        grep -qs "^$area $area none bind,nosuid,nodev " /etc/fstab ||
            echo "$area $area none bind,nosuid,nodev 0 0" >>/etc/fstab
    fi
    mount -o remount,bind,nosuid,nodev "$area"
    for flag in nosuid nodev; do
        findmnt -n -o OPTIONS --mountpoint "$area" | tr , '\n' | grep -qx "$flag" ||
            die "$area is not mounted $flag (its own file system? add nosuid,nodev to its fstab entry)"
    done
}

# Before any key exists: Debian's pam_env reads ~/.pam_environment
# (user_readenv=1), whose variables (LD_PRELOAD=...) reach the agent's /bin/sh
# before gatekeeper runs.
step_pam() {
    if [ -e /etc/pam.d/sshd ]; then
        sed -i 's/user_readenv=1/user_readenv=0/' /etc/pam.d/sshd
        ! grep -q 'user_readenv=1' /etc/pam.d/sshd || die "/etc/pam.d/sshd still reads ~/.pam_environment"
    fi
}

# A root-owned venv made from the system interpreter (a venv under /root is not
# reachable by the agent), and the ForceCommand's entry script beside it:
# $VENV/bin/gatekeeper-ssh, `#!$VENV/bin/python3 -IS` (pip cannot write that line).
step_gatekeeper() {
    [ -x "$VENV/bin/pip" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SOURCE"
    "$VENV/bin/gatekeeper" install-entry >/dev/null
    [ -x "$VENV/bin/gatekeeper-ssh" ] || die "$VENV/bin/gatekeeper-ssh was not written"
}

step_policy() {
    install -d -m 0755 -o root -g root /etc/gatekeeper /etc/gatekeeper/docker
    [ -e /etc/gatekeeper/policy.toml ] ||
        install -m 0644 -o root -g root "$SOURCE/examples/default.toml" /etc/gatekeeper/policy.toml
    "$VENV/bin/gatekeeper" policy compile /etc/gatekeeper/policy.toml # validate + fast path
}

# The live log is append-only in the kernel: never truncated, overwritten, renamed or
# unlinked. Who may append follows the policy: with [audit] via_proxy (the deployment)
# only the proxy writes it, root:root 0600, and the agent's account cannot open it at
# all; without, the agent's gatekeeper appends itself (root:AGENT 0620). Made so with the
# directory closed (0700), so that no descriptor is opened on it before it is append-only.
step_audit_log() {
    layout=$(audit_layout)
    install -d -m 0755 -o root -g root "$LOG_DIR"
    if [ "$LOG_DIR" = /var/log/gatekeeper ]; then
        sed "s|^f     $LOG .*|f     $LOG $(tmpfiles_fields "$layout")|" "$HERE/tmpfiles-gatekeeper.conf" |
            install -m 0644 -o root -g root /dev/stdin /etc/tmpfiles.d/gatekeeper.conf
    fi
    if ! is_append_only "$LOG"; then
        chmod 0700 "$LOG_DIR"
        (umask 077 && : >>"$LOG")
        chown "$(echo "$layout" | cut -d' ' -f1)" "$LOG"
        chmod "0$(echo "$layout" | cut -d' ' -f2)" "$LOG"
        if ! chattr +a "$LOG"; then
            chmod 0755 "$LOG_DIR"
            die "chattr +a $LOG failed: $LOG_DIR must be on a file system with append-only files (ext4, xfs, btrfs)"
        fi
        chmod 0755 "$LOG_DIR"
    fi
    is_append_only "$LOG" || die "$LOG is not append-only (lsattr shows no 'a')"
    [ "$(stat -c '%U:%G %a' "$LOG")" = "$layout" ] ||
        die "$LOG must be $layout for this policy (chattr -a it, fix owner and mode, run this step again)"
    [ "$(stat -c '%U:%G %a' "$LOG_DIR")" = "root:root 755" ] || die "$LOG_DIR must be root:root 0755"
}

# "owner:group mode" of the live log for the installed policy.
audit_layout() {
    set +e
    "$VENV/bin/python3" -I -c 'import sys
from gatekeeper.policy import load_policy
sys.exit(10 if load_policy(sys.argv[1]).settings["audit"]["via_proxy"] else 11)' "$POLICY"
    code=$?
    set -e
    case $code in
    10) echo "root:root 600" ;;
    11) echo "root:$AGENT 620" ;;
    *) die "cannot read [audit] via_proxy from $POLICY (run the policy step first)" ;;
    esac
}

tmpfiles_fields() { # "root:root 600" -> "0600 root root      -"
    echo "$1" | awk '{ split($1, owner, ":"); printf "0%s %s %-9s -\n", $2, owner[1], owner[2] }'
}

is_append_only() {
    [ -f "$1" ] && lsattr -d "$1" 2>/dev/null | cut -d' ' -f1 | grep -q a
}

step_logrotate() {
    install -m 0644 -o root -g root "$HERE/logrotate-gatekeeper" /etc/logrotate.d/gatekeeper
    logrotate --debug /etc/logrotate.d/gatekeeper >/dev/null 2>&1 || die "logrotate rejects /etc/logrotate.d/gatekeeper"
}

# The API-layer proxy (gatekeeper proxy): the agent's only way to the engine, and the
# only writer of the audit log. A systemd unit; where systemd does not run (a
# container, the test stack), the unit is installed and checked, and whoever runs
# the machine starts its ExecStart line.
step_proxy() {
    install_unit "$PROXY_UNIT"
    has_systemd || return 0
    wait_for_socket "$PROXY_SOCKET" "$PROXY_UNIT"
    [ "$(stat -c '%U:%G %a' "$PROXY_SOCKET")" = "root:$AGENT 660" ] ||
        die "$PROXY_SOCKET must be root:$AGENT 0660 ([proxy] group in the policy)"
}

# One of our units: installed root's and checked; where systemd runs this machine, enabled and
# (re)started. Without systemd (a container, the test stack) whoever runs the machine starts
# its ExecStart line.
install_unit() {
    install -d -m 0755 -o root -g root "$UNIT_DIR"
    install -m 0644 -o root -g root "$HERE/$1" "$UNIT_DIR/$1"
    if command -v systemd-analyze >/dev/null 2>&1; then
        systemd-analyze verify "$UNIT_DIR/$1" >/dev/null || die "systemd-analyze rejects $UNIT_DIR/$1"
    fi
    if has_systemd; then
        systemctl daemon-reload
        systemctl enable --quiet "$1"
        systemctl restart "$1"
    fi
}

has_systemd() {
    [ -d /run/systemd/system ]
}

# SOCKET UNIT: the socket the unit's daemon listens on, waited for (10 s).
wait_for_socket() {
    tries=0
    until [ -S "$1" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 50 ] || die "$1 did not appear (journalctl -u $2)"
        sleep 0.2
    done
}

# The resident ForceCommand, the drop-in's default: its C client beside the entry script
# (gatekeeper install-entry --resident) and the unit whose workers serve it. The client fails
# closed (no pool, every call denied), so the socket is waited for and checked here. Without
# systemd (a container, the test stack) the unit is installed and checked, and whoever runs
# the machine starts its ExecStart line. The fallback without this step: the drop-in's
# ForceCommand on gatekeeper-ssh (sshd_snippets/README.md).
step_resident() {
    "$VENV/bin/gatekeeper" install-entry --resident >/dev/null
    [ -x "$VENV/bin/gatekeeper-ssh-resident" ] || die "$VENV/bin/gatekeeper-ssh-resident was not compiled"
    install_unit "$RESIDENT_UNIT"
    has_systemd || return 0
    socket=$RESIDENT_DIR/$(id -u "$AGENT").sock
    wait_for_socket "$socket" "$RESIDENT_UNIT"
    [ "$(stat -c '%U:%g %a' "$socket")" = "root:$(id -g "$AGENT") 660" ] ||
        die "$socket must be root:<$AGENT's group> 0660"
    [ "$(stat -c '%U:%G %a' "$RESIDENT_DIR")" = "root:root 755" ] || die "$RESIDENT_DIR must be root:root 0755"
}

# Keys only here, root-owned: never in ~ai-worker/.ssh, which the agent can write.
step_keys_dir() {
    install -d -m 0755 -o root -g root "$SSHD_DIR/authorized_keys"
    [ -e "$SSHD_DIR/authorized_keys/$AGENT" ] ||
        install -m 0644 -o root -g root /dev/null "$SSHD_DIR/authorized_keys/$AGENT"
}

# sshd -t/-T refuse to run without their privilege separation directory. ssh.service
# makes it at start (RuntimeDirectory=sshd); /run is empty after a boot, so a check
# made before sshd ever ran (a fresh machine, a container) must make it too.
privsep_dir() {
    install -d -m 0755 -o root -g root /run/sshd
}

# 00-: sshd keeps the first value it reads, and Debian's sshd_config includes
# sshd_config.d/*.conf in name order, so ours must sort before every other one.
step_sshd() {
    grep -Eq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' "$SSHD_DIR/sshd_config" ||
        die "$SSHD_DIR/sshd_config does not Include /etc/ssh/sshd_config.d/*.conf"
    install -m 0644 -o root -g root "$HERE/00-gatekeeper.conf" "$DROP_IN"
    rm -f "$SSHD_DIR/sshd_config.d/gatekeeper.conf" # the old name sorted last
    privsep_dir
    /usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config"
    "$VENV/bin/gatekeeper" sshd-check --config "$SSHD_DIR/sshd_config"
}

# pam_systemd would start user@UID.service at every login, and that reads
# ~/.config/systemd/user and ~/.config/environment.d: files the agent writes.
step_no_user_manager() {
    uid=$(id -u "$AGENT")
    unit=/etc/systemd/system/user@$uid.service
    if command -v systemctl >/dev/null 2>&1; then
        systemctl mask "user@$uid.service" >/dev/null 2>&1 || ln -sfn /dev/null "$unit"
    else
        install -d -m 0755 /etc/systemd/system
        ln -sfn /dev/null "$unit"
    fi
    [ "$(readlink "$unit")" = /dev/null ] || die "$unit is not masked (a link to /dev/null)"
    if command -v loginctl >/dev/null 2>&1 && has_systemd; then
        loginctl disable-linger "$AGENT"
    fi
    rm -f "/var/lib/systemd/linger/$AGENT"
}

# cron and at would run the agent's own jobs, outside gatekeeper.
step_no_cron_at() {
    for deny in /etc/cron.deny /etc/at.deny; do
        grep -qx "$AGENT" "$deny" 2>/dev/null || echo "$AGENT" >>"$deny"
        chmod 0644 "$deny"
    done
    for allow in /etc/cron.allow /etc/at.allow; do
        ! grep -qx "$AGENT" "$allow" 2>/dev/null || die "$allow lists $AGENT"
    done
}

# After keys or the drop-in changed: reload sshd and close the agent's open
# connections, which keep the settings they logged in with.
step_reload() {
    privsep_dir
    /usr/sbin/sshd -t
    systemctl reload ssh
    pkill -u "$AGENT" -x sshd || true
}

[ "$(id -u)" -eq 0 ] || die "run as root"
[ $# -gt 0 ] || die "usage: install.sh STEP... (see the top of this file)"
for step in "$@"; do
    case $step in
    packages | account | area-mount | pam | gatekeeper | policy | audit-log | logrotate | proxy | resident | \
        keys-dir | sshd | no-user-manager | no-cron-at | reload)
        "step_$(echo "$step" | tr - _)"
        ;;
    *) die "unknown step $step" ;;
    esac
done
