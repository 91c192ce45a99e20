"""Dockerfiles whose lines docker's parser reads otherwise than Python's str.splitlines, strip
and split (what gatekeeper read them with before): each hides an instruction from that reading.
`{url}` is a URL only the host's loopback serves, `{base}` the image the build starts from.
Shared by tests/test_dockerfile_reading.py and tests/e2e/test_dockerfile_reading.py."""

from __future__ import annotations

SHAPES: dict[str, str] = {
    # a BOM before `# escape=`: Python reads no directive, so `\` still continues RUN onto ADD
    "bom_before_escape": "\ufeff# escape=`\nFROM {base}\nRUN true \\\nADD {url} /secret\n",
    # "\r", "\v", "\f" end a line for str.splitlines, separate words for docker
    "carriage_return_in_add": "FROM {base}\nADD\r{url} /secret\n",
    "vertical_tab_in_add": "FROM {base}\nADD\x0b{url} /secret\n",
    "form_feed_in_add": "FROM {base}\nADD\x0c{url} /secret\n",
    # a no-break space after the escape: str.rstrip drops it (a continuation), docker does not
    "nbsp_after_escape": "FROM {base}\nRUN true \\\xa0\nADD {url} /secret\n",
}


def naive_instructions(text: str) -> list[tuple[str, list[str]]]:
    """gatekeeper's reading before this (the control): Python's own lines and words."""
    escape = "\\"
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#") or "=" not in stripped:
            break
        key, _, value = stripped[1:].partition("=")
        if key.strip().lower() == "escape":
            escape = value.strip()
    out, pending = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or (pending and not line.strip()):
            continue
        if line.rstrip().endswith(escape):
            pending += line.rstrip()[:-1]
            continue
        logical, pending = pending + line, ""
        if logical.split():
            out.append((logical.split()[0].upper(), logical.split()[1:]))
    return out
