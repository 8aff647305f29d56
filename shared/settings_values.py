"""How both sides read a setting's value from YAML or the environment."""

from __future__ import annotations

from typing import Any

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value: Any) -> bool:
    """Read a flag: a YAML boolean, or 1/0, true/false, yes/no, on/off in any case.

    :raises ValueError: for anything else; the caller names the setting in its own error.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)
