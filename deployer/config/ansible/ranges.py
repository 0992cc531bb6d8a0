"""Host patterns as Ansible writes them: `web[01:20].example.com`, `db-[a:f]`, `[1:10:2]`, and
an optional `:port` (`[v6addr]:port` for IPv6). Pure string work; errors are ValueError with a
reason the caller places in a file and line.
"""

from __future__ import annotations

import re
import string

__all__ = ["expand_host_pattern"]

# `[inside]:port` (IPv6 or anything bracketed), and `name:port` where brackets stay whole.
_BRACKETED_PORT = re.compile(r"\[(.+)\]:([0-9]+)")
_NAME_PORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")
_RANGE = re.compile(r"\[([^\]]*)\]")


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """The host names a pattern stands for, in order, and the port it names (or None)."""
    host, port = _split_port(pattern)
    if pattern.strip().endswith(":") and port is None:
        raise ValueError("a host name cannot end in ':' (reserved for ':port')")
    names = _expand(host) if "[" in host else [host]
    return names, port


def _split_port(pattern: str) -> tuple[str, int | None]:
    # Ansible tries the bracketed form, then the plain one on what is left, and keeps the
    # pattern whole when what remains is not a recognisable address or name.
    host, port = pattern, None
    for form in (_BRACKETED_PORT, _NAME_PORT):
        match = form.fullmatch(host)
        if match:
            host, port = match.group(1), int(match.group(2))
    if _looks_like_address(host):
        return host, port
    return pattern, None


def _looks_like_address(host: str) -> bool:
    """A host name, IPv4 or IPv6 address, any of them with ranges in it: what Ansible accepts
    before it splits off a port. Loose on purpose: the exact grammar only decides whether a
    trailing `:NN` is a port, and a bare IPv6 address holds several ':' anyway."""
    if not host:
        return False
    plain = _RANGE.sub("0", host)
    if ":" in plain:  # IPv6: the port must be bracketed
        return bool(re.fullmatch(r"[0-9A-Fa-f:.]+", plain))
    return bool(re.fullmatch(r"[^\s]+", plain))


def _expand(name: str) -> list[str]:
    """Expand the first `[begin:end(:step)]`, then the rest of each result, like Ansible."""
    match = _RANGE.search(name)
    if match is None:
        return [name]
    head, tail = name[: match.start()], name[match.end() :]
    hosts: list[str] = []
    for part in _sequence(match.group(1)):
        hosts.extend(_expand(f"{head}{part}{tail}"))
    return hosts


def _sequence(spec: str) -> list[str]:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range [{spec}] must be [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise ValueError(f"host range [{spec}] has no end")
    step = _integer(bounds[2] if len(bounds) == 3 else "1", spec)
    if step <= 0:
        raise ValueError(f"host range [{spec}] needs a step of at least 1")
    letters = string.ascii_letters
    if begin in letters and end in letters and len(begin) == len(end) == 1:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise ValueError(f"host range [{spec}] must have begin <= end")
        return list(letters[first : last + 1 : step])
    width = 0
    if len(begin) > 1 and begin.startswith("0"):  # leading zeros are kept: web[01:20]
        width = len(begin)
        if len(end) != width:
            raise ValueError(f"host range [{spec}]: begin and end must have the same width")
    first, last = _integer(begin, spec), _integer(end, spec)
    if first > last:  # Ansible yields no hosts here; an empty range is always a typo
        raise ValueError(f"host range [{spec}] must have begin <= end")
    return [str(n).zfill(width) for n in range(first, last + 1, step)]


def _integer(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"host range [{spec}]: {text!r} is neither a number nor a single letter"
        ) from None
