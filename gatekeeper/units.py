"""Docker's units, as docker parses them, on their plain spellings (a leaf module).

Memory sizes (go-units RAMInBytes, binary units), log sizes (go-units
FromHumanSize, decimal units), CPU counts (ParseCPUs), pflag's int64 and Go
durations. Each accepts a strict subset of docker's spellings (plain decimal
digits), so whatever we accept means the same number to us and to docker;
anything else is None and refused by the caller instead of guessed at (docker's
int parser takes 0x10 and 010 as hex and octal, its size parser takes 1e3).
Used by the policy (to validate [limits], imported only when one is set) and the vetters.
"""

from __future__ import annotations

# docker/go-units binaryMap: RAMInBytes reads k, m, g, t, p as powers of 1024.
BINARY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
DIGITS = frozenset("0123456789")
NANO = 10**9
DECIMAL_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}
GO_DURATION_UNITS = {"ns": 1, "us": 1000, "\u00b5s": 1000, "\u03bcs": 1000, "ms": 10**6, "s": NANO,
                     "m": 60 * NANO, "h": 3600 * NANO}
DURATION_UNIT_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz\u00b5\u03bc")


def ram_in_bytes(text: str) -> int | None:
    """go-units RAMInBytes on its plain spellings ("512m", "2g", "1.5GiB", "1 kb",
    "1024"); None for everything else, including what docker would still take."""
    number, suffix = split_size(text)
    if number is None:
        return None
    suffix = suffix.lower()
    if suffix in ("", "b"):
        return int(number)
    unit = BINARY_UNITS.get(suffix[:1])
    if unit is None or suffix[1:] not in ("", "b", "ib"):
        return None
    return int(number * unit)  # float64 times the unit, truncated, as in go-units


def split_size(text: str) -> tuple[float | None, str]:
    """'1.5 g' -> (1.5, 'g'): digits with at most one '.', one optional space, a suffix."""
    end = 0
    while end < len(text) and (text[end] in DIGITS or text[end] == "."):
        end += 1
    number, suffix = text[:end], text[end:]
    if suffix.startswith(" "):
        suffix = suffix[1:]
    if not plain_decimal(number) or len(suffix) > 3:
        return None, ""
    return float(number), suffix


def plain_decimal(number: str) -> bool:
    whole, dot, fraction = number.partition(".")
    return bool(whole) and set(whole) <= DIGITS and (not dot or (bool(fraction) and set(fraction) <= DIGITS))


def nano_cpus(text: str) -> int | None:
    """docker's ParseCPUs ("1.5" -> 1500000000) on plain decimals; None otherwise
    (docker's big.Rat also reads "3/2" and "1e1": refused, not guessed)."""
    if not plain_decimal(text):
        return None
    whole, _, fraction = text.partition(".")
    if len(fraction) > 9:
        return None  # docker: "value is too precise"
    return int(whole) * NANO + int(fraction.ljust(9, "0") or "0")


def plain_int(text: str) -> int | None:
    """pflag's int64 (strconv.ParseInt base 0) on plain decimals only: "010" is
    octal and "0x10" hex to docker, so any leading zero or prefix is refused."""
    body = text[1:] if text.startswith("-") else text
    if not body or not set(body) <= DIGITS or (len(body) > 1 and body[0] == "0"):
        return None
    return int(text)


def go_duration(text: str) -> int | None:
    """Go's time.ParseDuration on unsigned spellings ("1ms", "1.5s", "1m30s", "0"), in
    nanoseconds; None for anything else (a sign, no unit, an unknown unit, digits other
    than ASCII's). Read by hand: `re` costs milliseconds at import on the hot path."""
    if text == "0":
        return 0
    if not text:
        return None
    total, at = 0, 0
    while at < len(text):
        number_end = digits_end(text, at)
        whole, fraction = text[at:number_end], ""
        if text[number_end:number_end + 1] == ".":
            fraction_end = digits_end(text, number_end + 1)
            fraction, number_end = text[number_end + 1:fraction_end], fraction_end
        unit_end = number_end
        while unit_end < len(text) and text[unit_end] in DURATION_UNIT_LETTERS:
            unit_end += 1
        scale = GO_DURATION_UNITS.get(text[number_end:unit_end])
        if not (whole or fraction) or scale is None:
            return None
        total += int(whole or "0") * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
        at = unit_end
    return total


def digits_end(text: str, at: int) -> int:
    """Where the run of ASCII digits starting at `at` ends."""
    while at < len(text) and text[at] in DIGITS:
        at += 1
    return at


def log_size(text: str) -> int | None:
    """'10m' -> 10000000 (FromHumanSize on plain spellings); None for anything else."""
    body = text.lower()
    if body.endswith("b"):
        body = body[:-1]
    unit = body[-1:] if body[-1:] in ("k", "m", "g") else ""
    digits = body[: len(body) - len(unit)]
    if not digits or not set(digits) <= DIGITS or digits[0] == "0":
        return None
    return int(digits) * DECIMAL_UNITS[unit]


def format_cpus(cpus: float) -> str:
    return f"{cpus:.9f}".rstrip("0").rstrip(".")


def show_bytes(size: int) -> str:
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def show_duration(nanos: int) -> str:
    for unit, scale in (("h", 3600 * NANO), ("m", 60 * NANO), ("s", NANO), ("ms", 10**6)):
        if nanos % scale == 0:
            return f"{nanos // scale}{unit}"
    return f"{nanos}ns"
