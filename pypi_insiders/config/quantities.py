"""Sizes ("10 GiB") and durations ("7 days", "P7D", seconds) as the mirror's settings write them.

One parser each, so `max_size`, `min_free` and `cooldown` read the same way everywhere and a
wrong value gets one message that says what is accepted. Durations follow uv's relative
`--exclude-newer` forms (friendly units or ISO 8601 days and hours): a day is 24 hours, and
months and years are refused because their length is not fixed.
"""

from __future__ import annotations

import re
from typing import Final

_SIZE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b|bytes?)?\s*", re.IGNORECASE)
_BINARY: Final = {"": 1, "b": 1, "byte": 1, "bytes": 1}
_POWERS: Final = {"k": 1, "m": 2, "g": 3, "t": 4}
_FRIENDLY: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.IGNORECASE)
_ISO: Final = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?",
                         re.IGNORECASE)
_UNITS: Final = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
SIZE_HELP: Final = 'a size in bytes or with a unit, like "10 GiB", "512 MiB" or "2 GB"'
DURATION_HELP: Final = 'a duration like "7 days", "72 hours", "P7D", "PT72H" or seconds'


def parse_size(value: int | str) -> int:
    """Bytes; "KiB".."TiB" are powers of 1024, "KB".."TB" powers of 1000. Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            msg = f"must be 0 or more, got {value}"
            raise ValueError(msg)
        return value
    if not isinstance(value, str) or not (found := _SIZE.fullmatch(value)):
        msg = f"expected {SIZE_HELP}, got {value!r}"
        raise ValueError(msg)
    number, unit = float(found.group(1)), (found.group(2) or "").lower()
    if unit in _BINARY:
        return int(number)
    base = 1024 if "i" in unit else 1000
    return int(number * base ** _POWERS[unit[0]])


def parse_duration(value: float | str) -> float:
    """Seconds. Raises ValueError naming the accepted forms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            msg = f"must be 0 or more, got {value}"
            raise ValueError(msg)
        return float(value)
    if not isinstance(value, str):
        msg = f"expected {DURATION_HELP}, got {value!r}"
        raise ValueError(msg)
    text = value.strip()
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    if text[:1].upper() == "P":
        return _iso_duration(text, value)
    found = _FRIENDLY.fullmatch(text)
    if found is None or found.group(2).lower() not in _UNITS:
        hint = " (months and years have no fixed length)" if found and found.group(2).lower()[:2] in (
            "mo", "y", "ye") else ""
        msg = f"expected {DURATION_HELP}, got {value!r}{hint}"
        raise ValueError(msg)
    return float(found.group(1)) * _UNITS[found.group(2).lower()]


def _iso_duration(text: str, value: str) -> float:
    found = _ISO.fullmatch(text)
    if found is None or not any(found.groups()) or text.upper().endswith("T"):
        msg = (f"expected {DURATION_HELP}, got {value!r} (ISO 8601 weeks, days, hours, "
               "minutes and seconds only)")
        raise ValueError(msg)
    weeks, days, hours, minutes, seconds = (float(part or 0) for part in found.groups())
    return weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + seconds
