"""Small helpers for reading options out of a wazuh-manager.conf XML element.

Every section parser (``<cluster>``, ``<auth>``, ``<remote>``, ``<ruleset>``...) uses these
so that a bad value always becomes one :class:`ConfigError` naming the file, the option and
the reason, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import Element

_BOOL_WORDS = {"yes": True, "true": True, "no": False, "false": False}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class ConfigError(Exception):
    """A configuration problem, reported as one line: ``FILE: <option>: reason``."""

    def __init__(self, source: str, option: str, reason: str) -> None:
        super().__init__(source, option, reason)
        self.source = source
        self.option = option
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: <{self.option}>: {self.reason}"


class Section:
    """One XML section (``<cluster>``, ``<auth>``...) with typed, validated accessors.

    Each accessor takes the child tag name and a default used when the tag is absent
    or empty; a present but invalid value raises :class:`ConfigError`.
    """

    def __init__(self, element: Element | None, source: str, name: str) -> None:
        self.element = element
        self.source = source
        self.name = name

    def error(self, option: str, reason: str) -> ConfigError:
        """Build a :class:`ConfigError` for ``<section><option>``."""
        return ConfigError(self.source, f"{self.name}><{option}", reason)

    def raw(self, option: str) -> str | None:
        """Return the stripped text of the last ``<option>`` child, or None when absent."""
        if self.element is None:
            return None
        found = self.element.findall(option)
        if not found:
            return None
        text = (found[-1].text or "").strip()
        return text or None

    def all_raw(self, option: str) -> list[str]:
        """Return the stripped texts of every ``<option>`` child (empty ones skipped)."""
        if self.element is None:
            return []
        texts = ((child.text or "").strip() for child in self.element.findall(option))
        return [text for text in texts if text]

    def text(self, option: str, default: str) -> str:
        """A free-form string option."""
        value = self.raw(option)
        return default if value is None else value

    def path(self, option: str, default: Path, base: Path) -> Path:
        """A file path option; a relative value is taken from ``base`` (the node's home)."""
        value = self.raw(option)
        if value is None:
            return default
        path = Path(value)
        return path if path.is_absolute() else base / path

    def boolean(self, option: str, default: bool) -> bool:
        """A yes/no option."""
        value = self.raw(option)
        if value is None:
            return default
        try:
            return _BOOL_WORDS[value.lower()]
        except KeyError:
            raise self.error(option, f"expected yes or no, got {value!r}") from None

    def integer(self, option: str, default: int, minimum: int, maximum: int) -> int:
        """An integer option within ``[minimum, maximum]``."""
        value = self.raw(option)
        if value is None:
            return default
        if not re.fullmatch(r"-?\d+", value):
            raise self.error(option, f"expected an integer, got {value!r}")
        number = int(value)
        if not minimum <= number <= maximum:
            raise self.error(option, f"{number} is outside {minimum}..{maximum}")
        return number

    def duration(self, option: str, default: float, minimum: float = 0.001) -> float:
        """A time span in seconds; accepts Wazuh's suffixes s, m, h, d, w."""
        value = self.raw(option)
        if value is None:
            return default
        match = _DURATION.match(value)
        if match is None:
            raise self.error(option, f"expected a duration like 10, 10s, 5m or 1h, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        if seconds < minimum:
            raise self.error(option, f"{value!r} is shorter than the minimum {minimum} s")
        return seconds

    def choice(self, option: str, default: str, allowed: tuple[str, ...]) -> str:
        """A string option that must be one of ``allowed``."""
        value = self.raw(option)
        if value is None:
            return default
        if value not in allowed:
            raise self.error(option, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def checked(self, option: str, default: str, check: Callable[[str], str | None]) -> str:
        """A string option validated by ``check``, which returns a reason when the value is bad."""
        value = self.text(option, default)
        reason = check(value)
        if reason is not None:
            raise self.error(option, reason)
        return value
