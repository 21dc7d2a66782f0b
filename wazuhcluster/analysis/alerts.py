"""Alert records in Wazuh's alerts.json shape, and the writer that appends them to disk.

The record follows analysisd's to_json output: ``timestamp``, ``rule`` (level, description, id,
mitre, info, frequency, firedtimes, mail, groups and the compliance arrays split out of the
groups), ``agent``, ``manager``, ``id``, ``cluster`` (unless hidden), ``previous_output``,
``full_log``, ``predecoder``, ``decoder``, ``data`` and ``location``.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time as time_module
from collections.abc import Callable
from typing import Any

import attrs

from wazuhcluster.analysis.alert_totals import AlertTally
from wazuhcluster.analysis.eventinfo import STATIC_FIELDS, EventInfo
from wazuhcluster.analysis.json_line import json_line
from wazuhcluster.analysis.rules import Rule
from wazuhcluster.util import tails

COMPLIANCE_PREFIXES = (
    ("pci_dss_", "pci_dss"),
    ("cis_", "cis"),
    ("gdpr_", "gdpr"),
    ("gpg13_", "gpg13"),
    ("hipaa_", "hipaa"),
    ("nist_800_53_", "nist_800_53"),
    ("tsc_", "tsc"),
)
_SYSLOG_HOST = re.compile(r"^[A-Z][a-z][a-z] [ 0123][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] ([^ ]+)")


@attrs.frozen
class Identity:
    """Who writes the alert: the manager's name and the cluster it belongs to."""

    manager_name: str = "localhost"
    cluster_name: str | None = "wazuh"
    cluster_node: str | None = None
    hide_cluster: bool = False


#: The last second :func:`format_timestamp` rendered, with the time zone it was rendered
#: in: ``(second, zone key, date and time, offset)``. Most alerts of a batch fall in the same
#: second; one tuple, replaced whole, so threads never see half of one.
_LAST_SECOND: tuple[int, tuple[int, int, int], str, str] = (-1, (0, 0, 0), "", "")


def format_timestamp(epoch: float) -> str:
    """Local time as ``%Y-%m-%dT%H:%M:%S.mmm±hhmm``."""
    global _LAST_SECOND
    millis = int((epoch - int(epoch)) * 1000)
    second = math.floor(epoch)  # the second localtime renders
    zone = (time_module.timezone, time_module.altzone, time_module.daylight)
    last = _LAST_SECOND
    if last[0] != second or last[1] != zone:
        local = time_module.localtime(epoch)
        last = _LAST_SECOND = (
            second,
            zone,
            time_module.strftime("%Y-%m-%dT%H:%M:%S", local),
            time_module.strftime("%z", local),
        )
    return f"{last[2]}.{millis:03d}{last[3]}"


def _add_nested(data: dict[str, Any], key: str, value: str) -> None:
    """Wazuh's W_JSON_AddField: dotted keys nest; a JSON array text becomes an array."""
    if "." in key:
        *heads, key = key.split(".")
        for head in heads:
            inner = data.get(head)
            if inner is None:
                inner = data[head] = {}
            elif not isinstance(inner, dict):
                return
            data = inner
    if key in data:
        return
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            data[key] = parsed
            return
    data[key] = value


def _rule_template(rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parts of a rule's section that never change: before and after ``firedtimes``."""
    cached = rule.alert_template
    if cached is not None:
        return cached
    head: dict[str, Any] = {"id": str(rule.id)}
    if rule.mitre_ids:
        head["mitre"] = {"id": list(rule.mitre_ids)}
    if rule.info:
        head["info"] = "".join(text for _, text in rule.info)
    if rule.reported_frequency is not None:
        head["frequency"] = rule.reported_frequency
    tail: dict[str, Any] = {"mail": rule.mail}
    groups: list[str] = []
    compliance: dict[str, list[str]] = {}
    for group in rule.groups:
        for prefix, name in COMPLIANCE_PREFIXES:
            if group.startswith(prefix):
                compliance.setdefault(name, []).append(group[len(prefix) :])
                break
        else:
            groups.append(group)
    tail["groups"] = groups
    for _, name in COMPLIANCE_PREFIXES:
        if name in compliance:
            tail[name] = compliance[name]
    rule.alert_template = (head, tail)
    return head, tail


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value


def rule_section(rule: Rule, event: EventInfo) -> dict[str, Any]:
    """The ``rule`` object of an alert."""
    head, tail = _rule_template(rule)
    section: dict[str, Any] = {}
    if rule.level:
        section["level"] = rule.level
    section["description"] = expand_description(rule.description, event)
    for key, value in head.items():
        section[key] = _copy(value)
    if not rule.no_counter:
        section["firedtimes"] = event.firedtimes
    for key, value in tail.items():
        section[key] = _copy(value)
    if not rule.level:
        section["level"] = 0
    return section


_DESCRIPTION_STATIC = frozenset(STATIC_FIELDS)


def _description_value(event: EventInfo, name: str) -> str | None:
    """The value Wazuh substitutes for ``$(name)``: a static field, a header field, else a
    dynamic field (so ``$(user)`` is a dynamic field named user, not dstuser)."""
    if name in _DESCRIPTION_STATIC:
        return event.static.get(name)
    if name == "program_name":
        return event.program_name
    if name == "hostname":
        return event.hostname
    return event.find_field(name)


def expand_description(text: str, event: EventInfo) -> str:
    """Replace ``$(field)`` with the event's field value (empty when the field is absent)."""
    if "$(" not in text:
        return text
    out: list[str] = []
    position = 0
    while True:
        start = text.find("$(", position)
        if start < 0:
            out.append(text[position:])
            break
        end = text.find(")", start + 2)
        if end < 0:
            out.append(text[position:])
            break
        out.append(text[position:start])
        out.append(_description_value(event, text[start + 2 : end]) or "")
        position = end + 1
    return "".join(out)


_ROOTCHECK_BLOCK = re.compile(r"\{([A-Za-z0-9_]*: [A-Za-z0-9_., ]*)\}")


def _more_compliance(section: dict[str, Any], data: dict[str, Any], full_log: str) -> None:
    """Compliance Wazuh takes from the event rather than the rule's groups.

    An SCA check's ``compliance`` entries (comma lists) join ``rule.<name>``; a rootcheck
    alert's ``{PCI_DSS: 2.2, 2.3}`` blocks of the log become ``rule.<name lower-cased>``.
    """
    check = data.get("sca", {}).get("check") if isinstance(data.get("sca"), dict) else None
    compliance = check.get("compliance") if isinstance(check, dict) else None
    if isinstance(compliance, dict):
        for name, value in compliance.items():
            if not isinstance(value, str):
                continue
            values = [item.strip() for item in value.split(",") if item.strip()]
            if not values:
                continue
            found = section.get(name)
            if isinstance(found, list):
                found.extend(values)
            else:
                section[name] = values
    if "rootcheck" in section.get("groups", ()) and "{" in full_log:
        for block in _ROOTCHECK_BLOCK.findall(full_log[:1024]):
            name, _, values = block.partition(":")
            section[name.strip().lower()] = [
                item.strip() for item in values.split(",") if item.strip()
            ]


def label_section(labels: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``agent.labels`` of an alert: every label but the hidden ones (a key with a leading
    ``!``), dotted keys nested (``aws.region`` → ``{"aws": {"region": ...}}``); empty when
    all are hidden, as Wazuh prints it."""
    section: dict[str, Any] = {}
    for key, value in labels:
        if key.startswith("!"):
            continue
        *parents, last = key.split(".")
        place = section
        for part in parents:
            child = place.get(part)
            if not isinstance(child, dict):
                child = place[part] = {}
            place = child
        place[last] = value
    return section


def build_alert(
    event: EventInfo, rule: Rule | None, identity: Identity, sequence: int
) -> dict[str, Any]:
    """The alerts.json record for ``event`` (also used by wazuh-logtest when no rule fired)."""
    alert: dict[str, Any] = {"timestamp": format_timestamp(event.time)}
    if rule is not None:
        alert["rule"] = rule_section(rule, event)
    agent: dict[str, Any] = {"id": event.agent_id}
    if event.agent_id == "000":
        agent["name"] = identity.manager_name
    elif event.agent_name is not None:
        agent["name"] = event.agent_name
    if event.agent_ip and event.agent_ip != "any":
        agent["ip"] = event.agent_ip
    if event.agent_labels:
        agent["labels"] = label_section(event.agent_labels)
    alert["agent"] = agent
    alert["manager"] = {"name": identity.manager_name}
    alert["id"] = f"{int(event.time)}.{sequence}"
    if not identity.hide_cluster:
        cluster = {"name": identity.cluster_name or "wazuh"}
        if identity.cluster_node:
            cluster["node"] = identity.cluster_node
        alert["cluster"] = cluster
    if rule is not None and len(event.last_events) > 1:
        alert["previous_output"] = "\n".join(event.last_events)
    if rule is None or not rule.no_full_log:
        alert["full_log"] = event.full_log
    predecoder: dict[str, str] = {}
    if event.program_name is not None:
        predecoder["program_name"] = event.program_name
    if event.timestamp is not None:
        predecoder["timestamp"] = event.timestamp
    host = _SYSLOG_HOST.match(event.full_log)
    if host is not None:
        predecoder["hostname"] = host.group(1)
    if predecoder:
        alert["predecoder"] = predecoder
    data: dict[str, Any] = {}
    for name in STATIC_FIELDS:
        value = event.static.get(name)
        if value is not None:
            data[name] = value
    if event.fields_in_data:
        for key, value in event.fields:
            if value != "":
                _add_nested(data, key, value)
    decoder = event.decoder
    if decoder is not None:
        section: dict[str, Any] = {}
        if decoder.accumulate:
            section["accumulate"] = 1
        if decoder.parent is not None:
            section["parent"] = decoder.parent
        section["name"] = decoder.reported_name
        alert["decoder"] = section
    if data:
        alert["data"] = data
    if rule is not None and "rule" in alert:
        _more_compliance(alert["rule"], data, event.full_log)
    if event.sections:
        alert.update(_copy(event.sections))
    location = event.location
    if location.startswith("("):
        arrow = location.find(">")
        if arrow >= 0:
            alert["location"] = location[arrow + 1 :]
    else:
        alert["location"] = location
    return alert


#: Reports a writer's trouble: ``(level, message)`` with level ``"error"`` or ``"warn"``.
Report = Callable[[str, str], None]


def _no_report(level: str, message: str) -> None:
    """The default: nobody to tell."""


class AlertWriter:
    """Append alerts as JSON lines to ``HOME/logs/alerts/alerts.json``.

    Writes are buffered; ``flush()`` pushes them to the file and ``close()`` flushes and
    closes, so no alert accepted before ``close()`` is lost. Safe to call from one worker
    thread while another thread calls ``flush()``.

    A failed write (disk full, read-only) never raises: the alerts of that flush are dropped
    and counted, what part of them reached the file is cut off again (so every line stays
    whole JSON), ``report`` hears one ERROR, and once a later flush succeeds one WARNING
    says how many alerts were lost.
    """

    def __init__(
        self,
        path: str,
        buffer_size: int = 64 * 1024,
        report: Report = _no_report,
        raw_write: Callable[[int, memoryview], int] = os.write,
        tally: AlertTally | None = None,
    ) -> None:
        self.path = path
        #: Counts the alerts written, for the hourly totals (None: nobody counts).
        self.tally = tally
        self.buffer_size = buffer_size
        self.report = report
        self._raw_write = raw_write
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._lock = threading.Lock()
        # Readable too, so the end a crash may have broken can be checked before appending.
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        self._pending: list[str | bytes] = []
        self._pending_size = 0
        self.written = 0
        #: Alerts dropped since writing last failed, and why it failed (None while it works).
        self.lost = 0
        self.failure: str | None = None
        #: Where a failed write's partial line starts, while it could not be cut off yet.
        self._cut: int | None = None
        self._repair_tail(self._fd)

    def _repair_tail(self, fd: int) -> None:
        """Before the first alert: cut the zero bytes a file system left where it lost the
        last writes (a crash, a journal abort) and a half line a killed node left, so every
        line a reader sees is whole JSON."""
        broken = []
        try:
            zeros = tails.cut_trailing_zeros(fd)
            if zeros:
                broken.append(f"{zeros} zero bytes (writes its file system lost): cut off")
            if not tails.ends_a_line(fd):
                if tails.cut_half_line(fd):
                    broken.append("half an alert: cut off")
                else:
                    os.write(fd, b"\n")  # too long to cut: ended, so the next line is whole
                    broken.append("a line too long to cut: ended")
        except OSError as error:
            self.report("error", f"Cannot check the end of {self.path}: {error}.")
            return
        if broken:
            self.report("warn", f"{self.path} ended with {'; '.join(broken)}.")

    def write(self, alert: dict[str, Any]) -> None:
        """Append one alert (buffered)."""
        line = json_line(alert) + b"\n"
        if self.tally is not None:
            self.tally.count(alert)
        with self._lock:
            self._add(line, 1)

    def write_lines(self, text: str) -> None:
        """Append alerts already rendered as JSON lines (each ending in a newline)."""
        if self.tally is not None:
            self.tally.count_lines(text)
        with self._lock:
            self._add(text, text.count("\n"))

    def write_rendered(self, data: bytes, count: int) -> None:
        """Append ``count`` alerts already rendered as UTF-8 JSON lines and already counted
        (the analysis processes count their alerts for the tally as they render them)."""
        with self._lock:
            self._add(data, count)

    def _add(self, text: str | bytes, count: int) -> None:
        if self._fd is None:
            raise ValueError("AlertWriter is closed")
        self._pending.append(text)
        self._pending_size += len(text)
        self.written += count
        if self._pending_size >= self.buffer_size:
            self._flush_locked()

    def flush(self) -> None:
        """Push buffered alerts to the file."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        fd = self._fd
        if fd is None or not self._pending:
            return
        pending = self._pending
        data = b"".join(
            piece if isinstance(piece, bytes) else piece.encode("utf-8") for piece in pending
        )
        self._pending.clear()
        self._pending_size = 0
        start: int | None = None
        try:
            if self._cut is not None:
                os.ftruncate(fd, self._cut)
                self._cut = None
            start = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                view = view[self._raw_write(fd, view) :]
        except OSError as error:
            self._failed(fd, start, data.count(b"\n"), error)
            return
        if self.failure is not None:
            self.report(
                "warn",
                f"{self.path} could not be written ({self.failure}); {self.lost} alerts were lost.",
            )
            self.failure = None
            self.lost = 0

    def _failed(self, fd: int, start: int | None, count: int, error: OSError) -> None:
        """Drop and count the alerts of a failed flush; cut off what reached the file."""
        self.lost += count
        if start is not None:
            try:
                os.ftruncate(fd, start)
            except OSError:
                self._cut = start  # read-only: cut it before the next write
        if self.failure is None:
            self.failure = str(error)
            self.report(
                "error",
                f"Cannot write {self.path}: {error}. Alerts are dropped (and counted) "
                "until it can be written again.",
            )

    def close(self) -> None:
        """Flush, sync and close; later writes raise ValueError."""
        with self._lock:
            if self._fd is None:
                return
            self._flush_locked()
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass  # nothing left to write: the data is the kernel's
            os.close(fd)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._fd is None
