"""The analysis settings read from wazuh-manager.conf: the ``<ruleset>`` and ``<alerts>`` blocks,
the archive options of ``<global>`` (``logall``, ``logall_json``), ``<analysis>`` (how many
analysis processes) and ``<global><limits><eps>`` (Wazuh's EPS limit).

Paths are relative to the node's HOME, as in Wazuh. With no ``<ruleset>`` block the stock
layout is used: ``ruleset/decoders`` and ``ruleset/rules`` then the user's ``etc/decoders``
and ``etc/rules``, plus every list found under ``etc/lists``.
"""

from __future__ import annotations

import os
import posixpath

import attrs

from wazuhcluster.config.xmlconfig import ConfigError, Section

DEFAULT_DECODER_DIRS = ("ruleset/decoders", "etc/decoders")
DEFAULT_RULE_DIRS = ("ruleset/rules", "etc/rules")
DEFAULT_LOG_ALERT_LEVEL = 3
DEFAULT_EMAIL_ALERT_LEVEL = 12
#: At most this many analysis processes.
MAX_WORKERS = 256
#: Wazuh's bounds for ``<limits><eps>``: maximum events per second, and the timeframe.
MAX_EPS = 100_000
DEFAULT_EPS_TIMEFRAME = 10
MAX_EPS_TIMEFRAME = 3600


def default_workers() -> int:
    """One analysis process per CPU this process may run on (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@attrs.frozen
class AnalysisSettings:
    """How analysis runs: ``workers`` child processes (0: one thread in the node process),
    and Wazuh's EPS limit, ``eps_maximum`` events per second over ``eps_timeframe`` seconds
    (0: no limit)."""

    workers: int = 1
    eps_maximum: int = 0
    eps_timeframe: int = DEFAULT_EPS_TIMEFRAME


def parse_analysis(analysis: Section, global_: Section) -> AnalysisSettings:
    """Read ``<analysis><workers>`` and ``<global><limits><eps>``; raise ConfigError."""
    workers = analysis.integer("workers", default_workers(), 0, MAX_WORKERS)
    element = global_.element.find("limits/eps") if global_.element is not None else None
    eps = Section(element, global_.source, "global><limits><eps")
    return AnalysisSettings(
        workers=workers,
        eps_maximum=eps.integer("maximum", 0, 0, MAX_EPS),
        eps_timeframe=eps.integer("timeframe", DEFAULT_EPS_TIMEFRAME, 1, MAX_EPS_TIMEFRAME),
    )


@attrs.frozen
class RulesetSettings:
    """Where the decoders, rules and CDB lists come from, and the alert gates."""

    decoder_dirs: tuple[str, ...] = DEFAULT_DECODER_DIRS
    rule_dirs: tuple[str, ...] = DEFAULT_RULE_DIRS
    decoder_files: tuple[str, ...] = ()
    rule_files: tuple[str, ...] = ()
    decoder_excludes: tuple[str, ...] = ()
    rule_excludes: tuple[str, ...] = ()
    lists: tuple[str, ...] | None = None
    log_alert_level: int = DEFAULT_LOG_ALERT_LEVEL
    email_alert_level: int = DEFAULT_EMAIL_ALERT_LEVEL
    #: ``<global><logall>``: every event to logs/archives/archives.log (plain lines).
    logall: bool = False
    #: ``<global><logall_json>``: every event to logs/archives/archives.json.
    logall_json: bool = False


def _relative(section: Section, option: str) -> tuple[str, ...]:
    values = []
    for value in section.all_raw(option):
        normal = posixpath.normpath(value)
        if normal.startswith("/") or normal == ".." or normal.startswith("../"):
            raise section.error(option, f"{value!r} must be a path inside HOME")
        values.append(normal)
    return tuple(values)


def _names(section: Section, option: str) -> tuple[str, ...]:
    values = []
    for value in section.all_raw(option):
        if "/" in value or value in (".", ".."):
            raise section.error(option, f"{value!r} must be a file name")
        values.append(value)
    return tuple(values)


def parse_ruleset(
    section: Section, alerts: Section | None = None, global_: Section | None = None
) -> RulesetSettings:
    """Read ``<ruleset>`` (and ``<alerts>``, ``<global>``'s archive options when given);
    raise ConfigError on a bad value."""
    if section.element is None:
        ruleset = RulesetSettings()
    else:
        ruleset = RulesetSettings(
            decoder_dirs=_relative(section, "decoder_dir"),
            rule_dirs=_relative(section, "rule_dir"),
            decoder_files=_relative(section, "decoder"),
            rule_files=_relative(section, "rule"),
            decoder_excludes=_names(section, "decoder_exclude"),
            rule_excludes=_names(section, "rule_exclude"),
            lists=_relative(section, "list"),
        )
        if not ruleset.decoder_dirs and not ruleset.decoder_files:
            raise section.error("decoder_dir", "no decoder directory or file is configured")
        if not ruleset.rule_dirs and not ruleset.rule_files:
            raise section.error("rule_dir", "no rule directory or file is configured")
    if alerts is not None:
        ruleset = attrs.evolve(
            ruleset,
            log_alert_level=alerts.integer("log_alert_level", DEFAULT_LOG_ALERT_LEVEL, 0, 16),
            email_alert_level=alerts.integer("email_alert_level", DEFAULT_EMAIL_ALERT_LEVEL, 0, 16),
        )
    if global_ is not None:
        ruleset = attrs.evolve(
            ruleset,
            logall=global_.boolean("logall", False),
            logall_json=global_.boolean("logall_json", False),
        )
    return ruleset


__all__ = ["AnalysisSettings", "ConfigError", "RulesetSettings", "parse_analysis", "parse_ruleset"]
