"""bench/process_trace.py's milestones: the session's programs, exec'd and exited, from kernel events.

The drop-in forces `exec gatekeeper-ssh ...`: the login shell's process becomes gatekeeper, so
"shell exit" and "ForceCommand exit" are that one process's exit (without `exec` the shell forks
and exits after its child)."""

from __future__ import annotations

from bench.process_trace import Event, milestones

PROGRAMS = {"shell": "/bin/sh", "ForceCommand": "/opt/gatekeeper/bin/gatekeeper-ssh",
            "docker": "/usr/bin/docker"}


def exec_event(when: float, pid: int, filename: str) -> Event:
    return Event(when, "exec", pid, pid, f"filename={filename} pid={pid} old_pid={pid}")


def exit_event(when: float, pid: int) -> Event:
    return Event(when, "exit", pid, pid, f"comm=x pid={pid} group_dead=1")


def test_exec_in_the_shells_process_ends_both_with_it() -> None:
    events = [Event(0.0, "fork", 10, 10, "parent_pid=1 child_pid=10"),
              exec_event(1.0, 10, "/bin/sh"), exec_event(2.0, 10, "/opt/gatekeeper/bin/gatekeeper-ssh"),
              exec_event(3.0, 11, "/usr/bin/docker"), exit_event(4.0, 11), exit_event(5.0, 10)]
    found = milestones(events, PROGRAMS)
    assert found == {"first": 0.0, "shell exec": 1.0, "ForceCommand exec": 2.0, "docker exec": 3.0,
                     "docker exit": 4.0, "ForceCommand exit": 5.0, "shell exit": 5.0}


def test_a_forking_shell_exits_after_its_child() -> None:
    events = [exec_event(1.0, 10, "/bin/sh"), exec_event(2.0, 12, "/opt/gatekeeper/bin/gatekeeper-ssh"),
              exec_event(3.0, 11, "/usr/bin/docker"), exit_event(4.0, 11), exit_event(5.0, 12),
              exit_event(6.0, 10)]
    found = milestones(events, PROGRAMS)
    assert (found["ForceCommand exit"], found["shell exit"]) == (5.0, 6.0)
