"""bench/ssh_bench.py's sshd pools: every side's rounds spread over its sshds, and the offsets report.

One sshd per side put that process's one-off offset (up to 8 ms a session) on the side's whole
run; the pools rotate round n onto sshd n % K and are started afresh every B rounds, so no side
keeps one process. No sshd is started here: only the bookkeeping is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ssh_bench import GK, PLAIN, PLAIN_AGAIN, PLAIN_PY, POOLS, Pool, pool_of, sshd_offsets


def pool(size: int) -> Pool:
    made = Pool("sshd-test", Path("/nonexistent"), Path("/nonexistent.conf"), Path("/nonexistent.key"), size)
    made.ports = [2200 + slot for slot in range(size)]
    return made


def test_round_n_goes_to_sshd_n_mod_k_and_a_restart_is_a_new_process() -> None:
    three = pool(3)
    assert [three.port(n) for n in range(1, 7)] == [2201, 2202, 2200, 2201, 2202, 2200]
    assert {three.process(n) for n in range(1, 31)} == {"0.0", "0.1", "0.2"}
    three.generation += 1  # what restart() does besides starting new sshds
    assert three.process(1) == "1.1"


def test_plain_with_the_interpreter_uses_plains_pool_and_the_aa_side_its_own() -> None:
    POOLS.clear()
    POOLS.update({GK: pool(3), PLAIN: pool(3), PLAIN_AGAIN: pool(3)})
    try:
        assert pool_of(PLAIN_PY) is POOLS[PLAIN]
        assert pool_of(PLAIN_AGAIN) is not POOLS[PLAIN]
        assert pool_of(GK) is POOLS[GK]
    finally:
        POOLS.clear()


def test_offsets_are_each_processs_median_distance_from_its_sides_median(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Side GK: process "0.0" is 10 ms slower than "0.1" on both commands: +5 and -5 from the medians.
    times = {"ps": {GK: [0.210, 0.200, 0.210, 0.200]}, "logs": {GK: [0.310, 0.300, 0.310, 0.300]}}
    served = {"ps": {GK: ["0.0", "0.1", "0.0", "0.1"]}, "logs": {GK: ["0.0", "0.1", "0.0", "0.1"]}}
    sshd_offsets(times, served)
    line = next(line for line in capsys.readouterr().out.splitlines() if GK in line)
    assert line.split(":")[-1].split() == ["-5.0", "+5.0"]
