"""How a piece of the cluster protocol plugs into every link of a role.

A role (master or worker) is a set of features — integrity sync, agent registry, agent-info,
agent-groups... Each feature owns its AMP commands (answered by the locator it builds for a
link), the stream kinds it accepts, what it does when a link comes up or goes down, and the
periodic services it runs. The link protocols only dispatch; they know no feature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from twisted.application.service import IService
from twisted.protocols import amp

from wazuhcluster.wire.stream_receiver import StreamKind

#: The role's view of one connection: on the master a
#: :class:`~wazuhcluster.master.workers.WorkerLink`, on a worker its
#: :class:`~wazuhcluster.worker.link.MasterLink`. This room knows neither.
LinkT = TypeVar("LinkT")


class LinkFeature(Generic[LinkT]):
    """Base class of a role's feature; every hook does nothing by default.

    A role's features are ``LinkFeature[WorkerLink]`` (master) or ``LinkFeature[MasterLink]``
    (worker): each hook receives the link in the role's own type.
    """

    def stream_kinds(self) -> Mapping[str, StreamKind]:
        """Stream kinds this feature accepts from the peer."""
        return {}

    def locator(self, link: LinkT) -> amp.CommandLocator | None:
        """The responders of this feature's commands for one authenticated link."""
        return None

    def on_stream(self, link: LinkT, kind: str, stream_id: str, result: object) -> object:
        """A stream of one of this feature's kinds arrived whole and verified.

        May return a Deferred; a ``str`` result goes back to the sender as the stream's reply.
        """
        raise NotImplementedError(f"{type(self).__name__} accepts no {kind} stream")

    def link_up(self, link: LinkT) -> None:
        """A link was authenticated."""

    def link_down(self, link: LinkT) -> None:
        """An authenticated link is gone."""

    def services(self) -> Iterable[IService]:
        """Services (periodic tasks...) to run while the node runs."""
        return ()

    def health(self, link: LinkT) -> Mapping[str, Any]:
        """This feature's part of the link's health report."""
        return {}


class FeatureSet(Generic[LinkT]):
    """The features of a role, with dispatch helpers for the link protocols."""

    def __init__(self, features: Iterable[LinkFeature[LinkT]] = ()) -> None:
        self.features: list[LinkFeature[LinkT]] = list(features)

    def add(self, feature: LinkFeature[LinkT]) -> None:
        """Add a feature (before any link exists)."""
        self.features.append(feature)

    def stream_kinds(self) -> dict[str, StreamKind]:
        """Every accepted stream kind; two features may not claim the same kind."""
        kinds: dict[str, StreamKind] = {}
        for feature in self.features:
            for name, kind in feature.stream_kinds().items():
                if name in kinds:
                    raise ValueError(f"stream kind {name!r} claimed twice")
                kinds[name] = kind
        return kinds

    def owner_of(self, kind: str) -> LinkFeature[LinkT]:
        """The feature that accepts stream ``kind``."""
        for feature in self.features:
            if kind in feature.stream_kinds():
                return feature
        raise KeyError(kind)

    def locators(self, link: LinkT) -> list[amp.CommandLocator]:
        """The command locators of every feature for ``link``."""
        found = (feature.locator(link) for feature in self.features)
        return [locator for locator in found if locator is not None]

    def link_up(self, link: LinkT) -> None:
        """Tell every feature a link came up."""
        for feature in self.features:
            feature.link_up(link)

    def link_down(self, link: LinkT) -> None:
        """Tell every feature a link went down."""
        for feature in self.features:
            feature.link_down(link)

    def health(self, link: LinkT) -> dict[str, Any]:
        """The merged health report of every feature for ``link``."""
        merged: dict[str, Any] = {}
        for feature in self.features:
            merged.update(feature.health(link))
        return merged


def locate_in(locators: Iterable[amp.CommandLocator], name: bytes) -> Any:
    """The first responder for command ``name`` among ``locators``, or None."""
    for locator in locators:
        responder = locator.locateResponder(name)
        if responder is not None:
            return responder
    return None
