"""Tally big plain log files on every CPU: split by byte range, merge in order.

A year of logs is about a gigabyte; parsing a million JSON lines takes a few
CPU-seconds, so a summary splits each large uncompressed file into one byte
range per CPU (``records.range_lines`` gives each line to exactly one
range). Compressed files and standard input are read sequentially.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from gatekeeper.views.filters import Criteria, matcher_or_none, raw_prefilter
from gatekeeper.views.records import (
    GZIP_MAGIC,
    ReadStats,
    Source,
    iter_records,
    range_lines,
    records_in,
)
from gatekeeper.views.summary import Tally, tally

PARALLEL_MIN_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True)
class RangeJob:
    path: str
    start: int
    end: int
    criteria: Criteria


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tally_sources(sources: Iterable[Source], criteria: Criteria, stats: ReadStats, *, workers: int) -> Tally:
    """One tally over all sources, in order, each big file split across ``workers``."""
    total = Tally()
    for source in sources:
        jobs = range_jobs(source, criteria, workers)
        if jobs:
            total.merge(tally_in_parallel(jobs, stats))
        else:
            total.merge(tally_sequentially(source, criteria, stats))
    return total


def tally_sequentially(source: Source, criteria: Criteria, stats: ReadStats) -> Tally:
    records = iter_records([source], stats, triggers=raw_prefilter(criteria, keep_exits=True))
    return tally(records, matcher_or_none(criteria))


def range_jobs(
    source: Source, criteria: Criteria, workers: int, *, min_bytes: int = PARALLEL_MIN_BYTES
) -> list[RangeJob]:
    """Byte ranges for a large plain file, or [] when it should be read in one go."""
    if workers < 2 or source.is_stdin or not is_large_plain_file(source.name, min_bytes):
        return []
    size = os.path.getsize(source.name)
    cuts = [size * index // workers for index in range(workers + 1)]
    return [RangeJob(source.name, a, b, criteria) for a, b in itertools.pairwise(cuts)]


def is_large_plain_file(path: str, min_bytes: int) -> bool:
    try:
        with open(path, "rb") as stream:
            magic = stream.read(len(GZIP_MAGIC))
            return magic != GZIP_MAGIC and os.fstat(stream.fileno()).st_size >= min_bytes
    except OSError:
        return False  # the sequential reader reports the error


def tally_in_parallel(jobs: Sequence[RangeJob], stats: ReadStats) -> Tally:
    """Run the ranges of one file in worker processes; merge in file order."""
    total = Tally()
    lines_before = 0  # turns a range's line numbers into the file's
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        for part, part_stats in pool.imap(tally_range, jobs):
            total.merge(part)
            stats.absorb(part_stats, line_offset=lines_before)
            lines_before += part_stats.lines
    return total


def tally_range(job: RangeJob) -> tuple[Tally, ReadStats]:
    """Worker: tally the lines that start inside one byte range of a file."""
    stats = ReadStats()
    triggers = raw_prefilter(job.criteria, keep_exits=True)
    with open(job.path, "rb") as stream:
        lines = range_lines(stream, job.start, job.end, stats, triggers)
        records = records_in(lines, job.path, stats)
        return tally(records, matcher_or_none(job.criteria)), stats
