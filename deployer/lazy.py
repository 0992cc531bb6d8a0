"""Re-exports imported on first use (PEP 562): a package's `__init__` names what it exports
and where each lives, and importing the package (or any module under it) loads none of them.
Type checkers read the same names from an `if TYPE_CHECKING:` import block beside it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports"]


def exports(
    package: dict[str, Any], homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of the package whose globals are `package`: each name
    in `homes` is imported from its module the first time it is asked for, then kept."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        package[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*package, *homes})

    return __getattr__, __dir__
