"""A slot holding the running engine, swapped atomically when the ruleset is reloaded.

The node builds the replacement off the reactor thread (loading parses every ruleset file)
and calls :meth:`EngineSlot.reload` there; events keep flowing through the old engine until
the new one is ready, and a ruleset that fails to load leaves the old engine in place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs

from wazuhcluster.analysis.engine import Engine, Event
from wazuhcluster.analysis.loader import RulesetError
from wazuhcluster.config.xmlconfig import ConfigError


@attrs.frozen
class ReloadResult:
    """What a reload did: whether the new engine is in use, and why not when it is not."""

    ok: bool
    error: str | None = None
    warnings: tuple[str, ...] = ()


class EngineSlot:
    """The current :class:`Engine`; ``process`` and ``reload`` may run on different threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.reloads = 0

    @property
    def engine(self) -> Engine:
        """The engine in use now."""
        return self._engine

    def process(self, event: Event) -> dict[str, Any] | None:
        """Analyse ``event`` with the current engine (one engine is never used concurrently)."""
        with self._lock:
            return self._engine.process(event)

    def reload(self, load: Callable[[], Engine]) -> ReloadResult:
        """Build a new engine with ``load`` and swap it in; keep the old one if that fails."""
        try:
            engine = load()
        except (RulesetError, ConfigError, OSError) as error:
            return ReloadResult(False, str(error))
        with self._lock:
            engine.identity = self._engine.identity
            self._engine = engine
            self.reloads += 1
        return ReloadResult(True, None, tuple(engine.warnings))
