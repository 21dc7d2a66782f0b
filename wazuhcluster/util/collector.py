"""Shorter pauses of Python's cycle collector: the objects a node starts with are frozen.

A full collection walks every object the collector tracks. A worker with 5,000 agents
tracks about 180,000, a third of them modules, classes, functions and the keys it loaded at
start, which live as long as the process; each full collection (every few minutes) took
100-120 ms of CPU, the highest one-second peaks of a worker in the whole-cluster benchmark.
``gc.freeze()`` moves the objects that exist once the node has started out of every later
collection. Objects made later (connections, sessions) are collected as before, so only
garbage left from start-up that is in reference cycles could stay: the collection run just
before the freeze frees it.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorCore


def freeze_startup_objects() -> int:
    """Collect, then freeze every object tracked now; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class FreezeStartupObjects(Service):
    """Freezes the objects that exist once the reactor runs with the node's services
    started (:func:`freeze_startup_objects`): wherever it sits in the service tree, the
    freeze comes after every ``startService`` of a tree started before the reactor runs."""

    def __init__(self, reactor: IReactorCore) -> None:
        self.reactor = reactor

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        """Freeze as soon as the reactor runs (at once when it already does)."""
        super().startService()
        self.reactor.callWhenRunning(freeze_startup_objects)
