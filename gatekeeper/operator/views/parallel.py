"""Tally logs on every CPU: one job per file, large plain files split by byte range.

A year of logs is about a gigabyte in 52 weekly files; parsing a million JSON
lines takes a few CPU-seconds. Each file becomes a job (gzip included), and a
large uncompressed file becomes one job per CPU, cut at byte offsets
(``records.range_lines`` gives each line to exactly one range). Jobs run in
worker processes and their tallies are merged in log order. Standard input
is read here, sequentially.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from gatekeeper.operator.views.filters import Criteria, matcher_or_none, raw_prefilter
from gatekeeper.operator.views.records import (
    GZIP_MAGIC,
    ReadStats,
    Source,
    iter_records,
    range_lines,
    records_in,
)
from gatekeeper.operator.views.summary import Tally, tally

PARALLEL_MIN_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    """Tally one file, or the byte range ``span`` of a large plain file."""

    path: str
    criteria: Criteria
    span: tuple[int, int] | None = None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tally_sources(
    sources: Iterable[Source],
    criteria: Criteria,
    stats: ReadStats,
    *,
    workers: int,
    min_bytes: int = PARALLEL_MIN_BYTES,
) -> Tally:
    """One tally over all sources, in order, on up to ``workers`` processes."""
    jobs = [job for source in sources for job in jobs_for(source, criteria, workers, min_bytes)]
    in_parallel = workers > 1 and len(jobs) > 1 and not any(job.path == "-" for job in jobs)
    if not in_parallel:
        return merged(map(tally_job, jobs), jobs, stats)
    with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
        return merged(pool.imap(tally_job, jobs), jobs, stats)


def jobs_for(source: Source, criteria: Criteria, workers: int, min_bytes: int) -> list[Job]:
    """The whole file as one job, or one byte range per worker if it is large and plain."""
    if workers < 2 or source.is_stdin or not is_large_plain_file(source.name, min_bytes):
        return [Job(source.name, criteria)]
    size = os.path.getsize(source.name)
    cuts = [size * index // workers for index in range(workers + 1)]
    return [Job(source.name, criteria, span) for span in itertools.pairwise(cuts)]


def is_large_plain_file(path: str, min_bytes: int) -> bool:
    try:
        with open(path, "rb") as stream:
            magic = stream.read(len(GZIP_MAGIC))
            return magic != GZIP_MAGIC and os.fstat(stream.fileno()).st_size >= min_bytes
    except OSError:
        return False  # the job reports the error when it reads


def merged(parts: Iterable[tuple[Tally, ReadStats]], jobs: Sequence[Job], stats: ReadStats) -> Tally:
    """Merge job results in log order; a range's line numbers become the file's."""
    total = Tally()
    lines_before = 0
    for job, previous, (part, part_stats) in zip(jobs, (None, *jobs), parts, strict=False):
        same_file = previous is not None and job.span is not None and previous.path == job.path
        lines_before = lines_before if same_file else 0
        total.merge(part)
        stats.absorb(part_stats, line_offset=lines_before)
        lines_before += part_stats.lines
    return total


def tally_job(job: Job) -> tuple[Tally, ReadStats]:
    """Worker: tally a whole file, or the lines that start inside its byte range."""
    stats = ReadStats()
    triggers = raw_prefilter(job.criteria, keep_exits=True)
    check = matcher_or_none(job.criteria)
    if job.span is None:
        return tally(iter_records([Source(job.path)], stats, triggers=triggers), check), stats
    with open(job.path, "rb") as stream:
        lines = range_lines(stream, *job.span, stats, triggers)
        return tally(records_in(lines, job.path, stats), check), stats
