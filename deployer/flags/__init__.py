"""Feature flags per environment: `flags/<env>.yml` in version control, pushed to every host as
`<deploy_to>/shared/flags.json` without a deploy, and read by applications through
`deployer.flags.runtime.is_enabled`. Guide: docs/flags.md.

    model.py    the YAML file validated into frozen objects, and the pushed JSON
    edit.py     one flag changed in the file's text, comments kept
    remote.py   the read-only remote step of `flags.list`
    push.py     list / set / push against the fleet (lock, atomic rename, history)
    runtime.py  what applications import (stdlib only)
    tasks.py    the Invoke collection `flags`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer.lazy import exports

if TYPE_CHECKING:
    from deployer.flags.model import Flag, FlagSet, FlagState, load_flags, parse_flags
    from deployer.flags.push import (
        FlagsReport,
        HostFlags,
        Pushed,
        list_flags,
        push_flags,
        set_flag,
    )
    from deployer.flags.runtime import is_enabled
else:
    # Imported on first use: an application importing `deployer.flags.runtime` (stdlib only)
    # must not load the deployer's whole API through this file.
    __getattr__, __dir__ = exports(
        globals(),
        {
            **dict.fromkeys(
                ["Flag", "FlagSet", "FlagState", "load_flags", "parse_flags"],
                "deployer.flags.model",
            ),
            **dict.fromkeys(
                ["FlagsReport", "HostFlags", "Pushed", "list_flags", "push_flags", "set_flag"],
                "deployer.flags.push",
            ),
            "is_enabled": "deployer.flags.runtime",
        },
    )


__all__ = [
    "Flag",
    "FlagSet",
    "FlagState",
    "FlagsReport",
    "HostFlags",
    "Pushed",
    "is_enabled",
    "list_flags",
    "load_flags",
    "parse_flags",
    "push_flags",
    "set_flag",
]
