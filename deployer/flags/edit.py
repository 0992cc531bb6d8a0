"""Change one flag in the text of `flags/<env>.yml` by editing only the values that change,
so comments, key order, quoting and layout elsewhere survive (`git diff` shows one or two
lines). Pure: text in, text out.

Values are replaced where YAML says they are (the parser's marks). A key the flag lacks
(`percent`, `allow`) is added after `enabled`: on its own line in a block mapping, as
`, key: value` in a flow one. A block-style `allow:` list becomes a flow list `[a, b]`, and
comments between its items go. The result is parsed again and must give exactly the intended
flag; otherwise nothing is written and the error asks for a hand edit.
"""

from __future__ import annotations

import json
import re

import yaml

from deployer.errors import ConfigError
from deployer.flags.model import Flag, parse_flags

__all__ = ["set_flag_text"]

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*")

Edit = tuple[int, int, str]  # replace text[start:end] with the string


def _scalar(value: str) -> str:
    """A user id as YAML flow text: plain when it reads back as the same string."""
    if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar


def _flow_list(ids: tuple[str, ...]) -> str:
    return "[" + ", ".join(_scalar(i) for i in ids) + "]"


def _value_text(key: str, flag: Flag) -> str:
    if key == "enabled":
        return "true" if flag.enabled else "false"
    if key == "percent":
        return str(flag.percent)
    return _flow_list(flag.allow)


def set_flag_text(text: str, file: str, env: str, target: Flag) -> str:
    """The file's text with flag `target.name` changed to `target` (enabled, percent, allow;
    the description is never changed here)."""
    current = parse_flags(text, file, env).get(target.name)  # validates the file too
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)  # parse_flags accepted it
    node = next(v for k, v in root.value if k.value == target.name)
    assert isinstance(node, yaml.MappingNode)
    keys = {k.value: (k, v) for k, v in node.value}

    edits: list[Edit] = []
    wanted = {
        "enabled": target.enabled != current.enabled,
        "percent": target.percent is not None and target.percent != current.percent,
        "allow": target.allow != current.allow,
    }
    for key in ("enabled", "percent", "allow"):
        if not wanted[key]:
            continue
        new = _value_text(key, target)
        if key in keys:
            edits.append(_replace(keys[key][0], keys[key][1], new))
        else:
            edits.append(_insert(text, node, keys["enabled"], f"{key}: {new}"))
    if target.percent is None and current.percent is not None:
        raise AssertionError("a percentage is never removed, only set to 100")
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]

    if parse_flags(text, file, env).get(target.name) != target:
        raise ConfigError(
            f"could not update flag '{target.name}' in place without changing its meaning",
            file=file,
            line=current.line,
            hint="edit the file by hand, then run `invoke flags.push`",
        )
    return text


def _replace(key: yaml.Node, value: yaml.Node, new: str) -> Edit:
    if isinstance(value, yaml.SequenceNode) and not value.flow_style and value.value:
        # A block list (`allow:` then `- a` lines) becomes a flow list on the key's line.
        return key.end_mark.index, value.value[-1].end_mark.index, f": {new}"
    return value.start_mark.index, value.end_mark.index, new


def _insert(
    text: str, mapping: yaml.MappingNode, enabled: tuple[yaml.Node, yaml.Node], entry: str
) -> Edit:
    key, value = enabled
    if mapping.flow_style:
        at = value.end_mark.index
        return at, at, f", {entry}"
    # After the whole `enabled:` line (its comment stays with it), at the same indentation.
    end = text.find("\n", value.end_mark.index)
    at = len(text) if end == -1 else end
    return at, at, "\n" + " " * key.start_mark.column + entry
