"""What a node answers about itself for the API's ``/manager/*`` and ``/cluster/{node_id}/*``.

The master answers its own questions here and asks a worker's over the cluster link (the
worker answers with this same class), so both roles give the same shapes: Wazuh's basic
information, the daemons' status, the configuration file as JSON (whole, one section or
one field; ``raw`` for the file's text), cluster.log read as Wazuh's log records, their
summary per tag, the analysis intake numbers in Wazuh's ``analysisd`` fields, a validation
of the configuration on disk, a ruleset reload, and the per-hour analysis totals kept
under var/stats (one day, and the hourly and weekly averages).

Every answer is a JSON-ready dict; a refused question raises
:class:`~wazuhcluster.api.errors.ApiError` with Wazuh's code. Reading files runs in a thread.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from wazuhcluster import WAZUH_VERSION
from wazuhcluster.agents.agent_counters import AgentCounters
from wazuhcluster.agents.requests import RequestError
from wazuhcluster.analysis.alert_totals import day_items, day_path, hourly, parse_date, weekly
from wazuhcluster.api.errors import ApiError, bad_request, wazuh_error
from wazuhcluster.api.query import Listing, apply_listing
from wazuhcluster.config.cluster import NodeConfig, load_config, read_xml
from wazuhcluster.config.sections import load_sections
from wazuhcluster.config.xmlconfig import ConfigError
from wazuhcluster.node.active_config import NotKept, active_configuration
from wazuhcluster.node.agent_stats import analysisd_agent_metrics
from wazuhcluster.node.alert_totals import read_day, read_days, totals_folder
from wazuhcluster.node.config_file import (
    MAX_CONFIG_BYTES,
    check_config_file,
    replace_config_file,
)
from wazuhcluster.util.json_tree import put_repeated
from wazuhcluster.util.threads import RunInThread

#: The questions a node answers (the AMP ``AskNode`` and the API use these names).
QUESTIONS = (
    "info",
    "status",
    "configuration",
    "logs",
    "logs_summary",
    "analysisd",
    "validation",
    "reload",
    "remoted",
    "stats",
    "stats_hourly",
    "stats_weekly",
    "daemons_stats",
    "active_configuration",
    "agent_request",
    "update_configuration",
    "restart",
    "agents_daemons_stats",
)
#: Seconds a node waits for an agent's answer to an API question (below the master's
#: wait for the node, so the node's time-out is the one the caller sees).
AGENT_REQUEST_TIMEOUT = 10.0
#: The longest question payload sent to an agent.
MAX_AGENT_PAYLOAD = 256
#: The daemons whose statistics ``daemons/stats`` gives, in Wazuh's order.
STATS_DAEMONS = ("wazuh-remoted", "wazuh-analysisd", "wazuh-db")
#: The daemons whose per-agent statistics ``/agents/{agent_id}/daemons/stats`` gives.
AGENT_STATS_DAEMONS = ("wazuh-remoted", "wazuh-analysisd")
#: The most of cluster.log read for one question (its newest part).
MAX_LOG_BYTES = 4 * 1024 * 1024
#: The most a worker's answer may weigh once encoded (one AMP value holds 64 KiB).
MAX_ANSWER_BYTES = 60_000
#: The log record fields usable in q, sort and select.
LOG_FIELDS = ("timestamp", "tag", "level", "description")
#: Wazuh's daemons, in the order its status answer lists them.
DAEMONS = (
    "wazuh-agentlessd",
    "wazuh-analysisd",
    "wazuh-authd",
    "wazuh-csyslogd",
    "wazuh-monitord",
    "wazuh-execd",
    "wazuh-integratord",
    "wazuh-logcollector",
    "wazuh-maild",
    "wazuh-remoted",
    "wazuh-reportd",
    "wazuh-syscheckd",
    "wazuh-clusterd",
    "wazuh-modulesd",
    "wazuh-db",
    "wazuh-apid",
)
#: Which Wazuh daemon a cluster.log task tag stands for (the rest is wazuh-clusterd's).
_TASK_DAEMONS = {
    "Agents": "wazuh-remoted",
    "Enrollment": "wazuh-authd",
    "Auth": "wazuh-authd",
    "API": "wazuh-apid",
    "Analysis": "wazuh-analysisd",
    "Registry": "wazuh-db",
}
_LOG_LINE = re.compile(
    r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) (DEBUG|INFO|WARNING|ERROR|CRITICAL): (.*)"
)
_TASK = re.compile(r"\[[^\]]*\] \[([^\]]*)\]")
#: Secrets never shown in a configuration answer.
_SECRETS = {("cluster", "key")}
HIDDEN = "*****"


class NodeAnswers:
    """One node's answers (see module docstring).

    ``intake`` gives the analysis intake numbers (None when the node runs no analysis);
    ``reload`` reloads its ruleset; ``running`` names the daemons this node stands in for;
    ``remoted`` gives the agent channel's counters (None when the node has no channel).
    """

    def __init__(
        self,
        config: NodeConfig,
        run_in_thread: RunInThread,
        intake: Callable[[], Mapping[str, Any]] | None = None,
        reload: Callable[[], Awaitable[object]] | None = None,
        running: tuple[str, ...] = (),
        now: Callable[[], float] = time.time,
        remoted: Callable[[], Mapping[str, Any]] | None = None,
        ask_agent: Callable[[str, str, float], Awaitable[str]] | None = None,
        restart: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.run_in_thread = run_in_thread
        self.intake = intake
        self.reload = reload
        self.running = running
        self.now = now
        self.remoted = remoted
        #: Asks an agent connected to this node a question (``#!-req``); None without a
        #: channel. Raises :class:`~wazuhcluster.agents.requests.RequestError`.
        self.ask_agent = ask_agent
        self.restart = restart
        #: The channel's per-agent counters and the analysis intake's per-agent counts
        #: (events by queue letter, dropped); None where this node has neither.
        self.agent_counters: AgentCounters | None = None
        self.agent_queues: Callable[[str], tuple[dict[str, int], int]] | None = None
        #: When this node's counters started (the daemons' ``uptime``).
        self.started = now()

    @property
    def name(self) -> str:
        """This node's name."""
        return self.config.cluster.node_name

    async def answer(self, question: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The answer to ``question`` (one of :data:`QUESTIONS`)."""
        if question == "info":
            return self.info()
        if question == "status":
            return self.status()
        if question == "configuration":
            found: dict[str, Any] = await self.run_in_thread(self.configuration, dict(arguments))
            return found
        if question == "logs":
            logs: dict[str, Any] = await self.run_in_thread(self.logs, dict(arguments))
            return logs
        if question == "logs_summary":
            summary: dict[str, Any] = await self.run_in_thread(self.logs_summary)
            return summary
        if question == "analysisd":
            return self.analysisd()
        if question == "remoted":
            return self.remoted_stats()
        if question == "stats":
            dated: dict[str, Any] = await self.run_in_thread(self.stats, dict(arguments))
            return dated
        if question == "stats_hourly":
            hourly: dict[str, Any] = await self.run_in_thread(self.stats_hourly)
            return hourly
        if question == "stats_weekly":
            weekly: dict[str, Any] = await self.run_in_thread(self.stats_weekly)
            return weekly
        if question == "daemons_stats":
            return self.daemons_stats(arguments.get("daemons") or STATS_DAEMONS)
        if question == "active_configuration":
            active: dict[str, Any] = await self.run_in_thread(
                self.active_configuration,
                str(arguments.get("component", "")),
                str(arguments.get("configuration", "")),
            )
            return active
        if question == "agent_request":
            return await self.agent_request(arguments)
        if question == "update_configuration":
            updated: dict[str, Any] = await self.run_in_thread(
                self.update_configuration, arguments.get("text")
            )
            return updated
        if question == "restart":
            return await self.restart_node(arguments.get("delay"))
        if question == "agents_daemons_stats":
            return self.agents_daemons_stats(arguments)
        if question == "validation":
            checked: dict[str, Any] = await self.run_in_thread(self.validation)
            return checked
        if question == "reload":
            if self.reload is None:
                raise wazuh_error(1017, f"{self.name}: wazuh-analysisd")
            await self.reload()
            return {"name": self.name}
        raise bad_request(f"unknown node question {question[:64]!r}")

    # --- the answers --------------------------------------------------------------------
    async def agent_request(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``{"answer": text}``: what an agent connected here answers to ``payload``
        (``<component> getconfig <section>`` or ``<component> getstate``). 1117 when the
        agent is not connected here, does not answer in time or answers too much."""
        agent_id = arguments.get("agent_id")
        payload = arguments.get("payload")
        if (
            not isinstance(agent_id, str)
            or not re.fullmatch(r"\d{3,8}", agent_id)
            or not isinstance(payload, str)
            or not 0 < len(payload) <= MAX_AGENT_PAYLOAD
            or "\n" in payload
        ):
            raise bad_request("agent_request needs an agent_id and a one-line payload")
        if self.ask_agent is None:
            raise wazuh_error(1117, f"{self.name} has no agent channel")
        try:
            answer = await self.ask_agent(agent_id, payload, AGENT_REQUEST_TIMEOUT)
        except RequestError as error:
            raise wazuh_error(1117, str(error)) from None
        if len(answer.encode()) > MAX_ANSWER_BYTES - 1024:
            raise wazuh_error(1117, f"the agent's answer is larger than {MAX_ANSWER_BYTES} bytes")
        return {"answer": answer}

    def agents_daemons_stats(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``{"timestamp", "items"}``: for each asked daemon (``wazuh-remoted``,
        ``wazuh-analysisd``) this node counts, the per-agent ``metrics`` of ``agent_id``
        and when their count started (``uptime``)."""
        agent_id = arguments.get("agent_id")
        daemons = arguments.get("daemons")
        if (
            not isinstance(agent_id, str)
            or not re.fullmatch(r"\d{3,8}", agent_id)
            or not isinstance(daemons, list)
            or len(daemons) > len(AGENT_STATS_DAEMONS)
        ):
            raise bad_request("agents_daemons_stats needs an agent_id and a list of daemons")
        now = self.now()
        items: list[dict[str, Any]] = []
        failed: list[str] = []
        started = self.started
        if self.agent_counters is not None:
            started = self.agent_counters.started(agent_id) or started
        for name in daemons:
            if name == "wazuh-remoted" and self.agent_counters is not None:
                metrics = self.agent_counters.remoted_metrics(agent_id)
            elif name == "wazuh-analysisd" and self.agent_queues is not None:
                metrics = analysisd_agent_metrics(*self.agent_queues(agent_id))
            else:
                failed.append(str(name))
                continue
            items.append({"name": name, "uptime": _utc(started), "metrics": metrics})
        return {"timestamp": _utc(now), "items": items, "failed": failed}

    def info(self) -> dict[str, Any]:
        """Wazuh's basic information about this installation."""
        return {
            "path": str(self.config.home.root),
            "version": f"v{WAZUH_VERSION}",
            "type": "server",
            "max_agents": "unlimited",
            "openssl_support": "yes",
            "tz_offset": time.strftime("%z"),
            "tz_name": time.strftime("%Z"),
            "uuid": None,
        }

    def status(self) -> dict[str, str]:
        """Each Wazuh daemon: running when this node does its work, else stopped."""
        return {name: "running" if name in self.running else "stopped" for name in DAEMONS}

    def configuration(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The configuration file on disk: ``{"raw": text}``, or its JSON form (whole, one
        ``section``, or one ``field`` of it)."""
        source = self.config.source
        if arguments.get("raw"):
            text = Path(source).read_text("utf-8", errors="replace")
            return {"raw": _hide_raw(text)}
        try:
            root = read_xml(Path(source))
        except ConfigError as error:
            raise wazuh_error(1101, str(error)) from None
        document = configuration_json(root)
        section = arguments.get("section")
        field = arguments.get("field")
        if field and not section:
            raise bad_request("'field' needs a 'section'")
        if section:
            if section not in document:
                raise wazuh_error(1106, section)
            value = document[section]
            if field:
                blocks = value if isinstance(value, list) else [value]
                picked = [block[field] for block in blocks if field in block]
                if not picked:
                    raise wazuh_error(1103, f"{section}: {field}")
                value = {field: picked[0] if len(picked) == 1 else picked}
            document = {section: value}
        return document

    def _log_records(self) -> list[dict[str, str]]:
        path = self.config.home.cluster_log
        try:
            with open(path, "rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                handle.seek(max(0, size - MAX_LOG_BYTES))
                data = handle.read(MAX_LOG_BYTES)
        except FileNotFoundError:
            return []
        lines = data.decode("utf-8", errors="replace").splitlines()
        if len(data) == MAX_LOG_BYTES and lines:
            lines = lines[1:]  # the first line was cut
        records: list[dict[str, str]] = []
        for line in lines:
            record = parse_log_line(line)
            if record is not None:
                records.append(record)
            elif records:  # a traceback's continuation
                records[-1]["description"] += "\n" + line
        return records

    def logs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """cluster.log records, newest first by default, filtered and paged."""
        records = self._log_records()
        records.reverse()
        if arguments.get("tag"):
            records = [r for r in records if r["tag"] == arguments["tag"]]
        if arguments.get("level"):
            records = [r for r in records if r["level"] == arguments["level"]]
        search = arguments.get("search") or ""
        listing = Listing(
            offset=int(arguments.get("offset", 0)),
            limit=int(arguments.get("limit", 500)),
            select=tuple(arguments.get("select", ())),
            sort=tuple((field, bool(desc)) for field, desc in arguments.get("sort", ())),
            search=search.lstrip("-") or None,
            search_negated=search.startswith("-"),
            q=arguments.get("q") or None,
        )
        page, total = apply_listing(records, listing, LOG_FIELDS)
        if arguments.get("distinct"):
            page = [
                dict(item) for item in {json.dumps(i, sort_keys=True): i for i in page}.values()
            ]
        return {"items": page, "total": total}

    def logs_summary(self) -> dict[str, Any]:
        """How many records each tag logged, per level."""
        summary: dict[str, dict[str, int]] = {}
        for record in self._log_records():
            counts = summary.setdefault(
                record["tag"],
                {"all": 0, "info": 0, "error": 0, "critical": 0, "warning": 0, "debug": 0},
            )
            counts["all"] += 1
            counts[record["level"]] = counts.get(record["level"], 0) + 1
        return {"items": [{tag: counts} for tag, counts in sorted(summary.items())]}

    def analysisd(self) -> dict[str, Any]:
        """The analysis intake numbers in Wazuh's ``analysisd`` statistics fields."""
        if self.intake is None:
            raise wazuh_error(1017, f"{self.name}: wazuh-analysisd")
        return analysisd_stats(self.intake())

    def remoted_stats(self) -> dict[str, Any]:
        """Wazuh's remoted statistics: the agent channel's counters, and the queue events
        wait in for analysis (``queue_size`` of ``total_queue_size``)."""
        if self.remoted is None:
            raise wazuh_error(1017, f"{self.name}: wazuh-remoted")
        found = {key: float(value) for key, value in self.remoted().items()}
        intake = self.intake() if self.intake is not None else {}
        return {
            "queue_size": float(intake.get("queue_length") or 0),
            "total_queue_size": float(intake.get("queue_size") or 0),
            **found,
        }

    def stats(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """One day's per-hour totals (``date``, today by default), as Wazuh's items."""
        text = arguments.get("date")
        try:
            moment = parse_date(text) if text else time.localtime(self.now())
        except ValueError as error:
            raise bad_request(str(error)) from None
        folder = totals_folder(self.config.home.root)
        try:
            day = read_day(folder, moment)
        except ValueError as error:
            raise wazuh_error(1309, f"{day_path(moment)}: {error}") from None
        if day is None:
            raise wazuh_error(1308, day_path(moment))
        return {"items": day_items(day)}

    def stats_hourly(self) -> dict[str, Any]:
        """The events of each hour averaged over the days kept."""
        days = read_days(totals_folder(self.config.home.root))
        return {"items": [hourly(day for _, day in days)]}

    def stats_weekly(self) -> dict[str, Any]:
        """The hourly averages per weekday."""
        return {"items": weekly(read_days(totals_folder(self.config.home.root)))}

    def daemons_stats(self, daemons: Any) -> dict[str, Any]:
        """Wazuh 4.4's statistics of each asked daemon this node stands in for, from its
        own counters (what it does not count is 0); the others are failed (1017)."""
        now = self.now()
        items: list[dict[str, Any]] = []
        failed: list[str] = []
        for name in daemons if isinstance(daemons, list) else []:
            metrics = self._daemon_metrics(str(name))
            if metrics is None:
                failed.append(str(name))
                continue
            items.append(
                {
                    "uptime": _utc(self.started),
                    "timestamp": _utc(now),
                    "name": name,
                    "metrics": metrics,
                }
            )
        return {"items": items, "failed": failed}

    def _daemon_metrics(self, name: str) -> dict[str, Any] | None:
        if name not in self.running or name not in STATS_DAEMONS:
            return None
        if name == "wazuh-remoted":
            if self.remoted is None:
                return None
            return remoted_metrics(self.remoted(), self.intake() if self.intake is not None else {})
        if name == "wazuh-analysisd":
            if self.intake is None:
                return None
            return analysisd_metrics(self.intake())
        return wazuh_db_metrics()

    def active_configuration(self, component: str, configuration: str) -> dict[str, Any]:
        """The settings this node runs with for a Wazuh component and configuration:
        ``{"item": ...}``, or ``{"error": code}`` when they are not kept here."""
        try:
            sections = load_sections(self.config)
            return {"item": active_configuration(self.config, sections, component, configuration)}
        except NotKept as absent:
            return {"error": absent.code}
        except ConfigError as error:
            raise wazuh_error(1101, str(error)) from None

    def update_configuration(self, text: Any) -> dict[str, Any]:
        """Replace this node's configuration file by ``text`` if it would start the node:
        ``{"name": ...}``, or ``{"error": 1125, "reason": ...}`` with the file unchanged."""
        if not isinstance(text, str) or not text.strip():
            return {"error": 1125, "reason": "the configuration is empty"}
        data = text.encode("utf-8")
        if len(data) > MAX_CONFIG_BYTES:
            return {"error": 1125, "reason": f"the file is larger than {MAX_CONFIG_BYTES} bytes"}
        try:
            replace_config_file(self.config, data)
        except ConfigError as error:
            return {"error": 1125, "reason": str(error)}
        return {"name": self.name}

    async def restart_node(self, delay: Any) -> dict[str, Any]:
        """Restart this node in ``delay`` seconds (0.5 to 30) if its configuration file
        would start it: ``{"name": ...}``, or ``{"error": 1908 (1017 when it cannot restart),
        "reason": ...}``."""
        if self.restart is None:
            return {"error": 1017, "reason": "this node cannot restart itself"}
        reason: str = await self.run_in_thread(self.start_check)
        if reason:
            return {"error": 1908, "reason": reason}
        seconds = delay if isinstance(delay, (int, float)) else 1.0
        self.restart(min(max(float(seconds), 0.5), 30.0))
        return {"name": self.name}

    def start_check(self) -> str:
        """Why the configuration file on disk would not start this node (checked as
        ``--test-config`` does), or "" when it would."""
        config = self.config
        try:
            check_config_file(Path(config.source), config.home, config.cluster.node_type)
        except ConfigError as error:
            return str(error)
        return ""

    def validation(self) -> dict[str, Any]:
        """Whether the configuration file on disk would start this node."""
        config = self.config
        try:
            fresh = load_config(Path(config.source), config.home, config.cluster.node_type)
            load_sections(fresh)
        except ConfigError as error:
            return {"name": self.name, "status": "KO", "details": str(error)}
        return {"name": self.name, "status": "OK"}


def parse_log_line(line: str) -> dict[str, str] | None:
    """One cluster.log line as Wazuh's log record, or None when it does not start one."""
    found = _LOG_LINE.match(line)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    local = time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(local))
    text = found.group(8)
    task = _TASK.match(text)
    tag = _TASK_DAEMONS.get(task.group(1), "wazuh-clusterd") if task else "wazuh-clusterd"
    return {
        "timestamp": stamp,
        "tag": tag,
        "level": found.group(7).lower(),
        "description": " " + text,
    }


def analysisd_stats(intake: Mapping[str, Any]) -> dict[str, Any]:
    """Wazuh's analysisd statistics, from the fields of the intake numbers that map to them
    (queue usage as a fraction, as Wazuh gives it)."""
    size = float(intake.get("queue_size") or 0)
    length = float(intake.get("queue_length") or 0)
    return {
        "total_events_decoded": float(intake.get("decoded", 0)),
        "events_received": float(intake.get("received", 0)),
        "events_processed": float(intake.get("processed", 0)),
        "events_dropped": float(intake.get("dropped", 0)),
        "alerts_written": float(intake.get("alerts_written", 0)),
        "event_queue_size": size,
        "event_queue_usage": round(length / size, 4) if size else 0.0,
        "events_edps": float(intake.get("eps_10s", 0)),
    }


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def remoted_metrics(numbers: Mapping[str, Any], intake: Mapping[str, Any]) -> dict[str, Any]:
    """Wazuh's wazuh-remoted metrics from the agent channel's counters; the received queue
    is the analysis queue events wait in. Pings, control messages by kind, key reloads
    and sent messages by kind are not counted here (0)."""
    return {
        "bytes": {
            "received": int(numbers.get("recv_bytes", 0)),
            "sent": int(numbers.get("sent_bytes", 0)),
        },
        "keys_reload_count": 0,
        "messages": {
            "received_breakdown": {
                "control": int(numbers.get("ctrl_msg_count", 0)),
                "control_breakdown": {"keepalive": 0, "request": 0, "shutdown": 0, "startup": 0},
                "dequeued_after": int(numbers.get("dequeued_after_close", 0)),
                "discarded": int(numbers.get("discarded_count", 0)),
                "event": int(numbers.get("evt_count", 0)),
                "ping": 0,
                "unknown": 0,
            },
            "sent_breakdown": {
                "ack": 0,
                "ar": 0,
                "discarded": 0,
                "request": 0,
                "sca": 0,
                "shared": 0,
            },
        },
        "queues": {
            "received": {
                "size": int(intake.get("queue_size") or 0),
                "usage": int(intake.get("queue_length") or 0),
            }
        },
        "tcp_sessions": int(numbers.get("tcp_sessions", 0)),
    }


def analysisd_metrics(intake: Mapping[str, Any]) -> dict[str, Any]:
    """Wazuh's wazuh-analysisd metrics from the intake numbers: events received, decoded,
    processed and dropped for a full queue (all counted as from agents), alerts written,
    and the one event queue as ``processed`` (usage in percent). The per-module
    breakdowns and the other queues Wazuh has are not kept here (0)."""
    received = int(intake.get("received", 0))
    dropped = int(intake.get("dropped", 0))
    size = int(intake.get("queue_size") or 0)
    length = int(intake.get("queue_length") or 0)
    return {
        "bytes": {"received": 0},
        "eps": {
            "available_credits": 0,
            "available_credits_prev": 0,
            "events_dropped": 0,
            "events_dropped_not_eps": dropped,
            "seconds_over_limit": 0,
        },
        "events": {
            "processed": int(intake.get("processed", 0)),
            "received": received,
            "received_breakdown": {
                "decoded_breakdown": {"agent": int(intake.get("decoded", 0)), "remote": 0},
                "dropped_breakdown": {"agent": dropped, "remote": 0},
            },
            "written_breakdown": {
                "alerts": int(intake.get("alerts_written", 0)),
                "archives": 0,
                "firewall": 0,
                "fts": 0,
                "stats": 0,
            },
        },
        "queues": {
            "processed": {
                "size": size,
                "usage": round(100 * length / size) if size else 0,
            }
        },
    }


def wazuh_db_metrics() -> dict[str, Any]:
    """Wazuh's wazuh-db metrics: the registry does not count its queries (0)."""
    return {"queries": {"received": 0}, "time": {"execution": 0}}


def configuration_json(root: Element) -> dict[str, Any]:
    """The configuration's blocks as Wazuh's JSON: a block seen twice becomes a list, a
    leaf its text, a repeated option a list; secrets are hidden."""
    document: dict[str, Any] = {}
    for block in _blocks(root):
        value = _element_json(block, block.tag)
        put_repeated(document, block.tag, value)
    return document


def _blocks(root: Element) -> list[Element]:
    if root.tag == "wazuh_config" or root.tag == "ossec_config":
        return list(root)
    return [child for config in root for child in config]


def _element_json(element: Element, section: str) -> Any:
    children = list(element)
    if not children and not element.attrib:
        text = (element.text or "").strip()
        return text
    value: dict[str, Any] = {}
    for name, attribute in element.attrib.items():
        value[name] = attribute
    for child in children:
        if (section, child.tag) in _SECRETS:
            put_repeated(value, child.tag, HIDDEN)
        else:
            put_repeated(value, child.tag, _element_json(child, section))
    text = (element.text or "").strip()
    if text and children == []:
        value["item"] = text
    return value


def _hide_raw(text: str) -> str:
    def hide(block: re.Match[str]) -> str:
        return re.sub(r"(<key>).*?(</key>)", rf"\g<1>{HIDDEN}\g<2>", block.group(0), flags=re.S)

    return re.sub(r"<cluster>.*?</cluster>", hide, text, flags=re.S)


def fit_answer(answer: dict[str, Any], limit: int = MAX_ANSWER_BYTES) -> dict[str, Any]:
    """``answer`` cut to ``limit`` bytes once encoded: items dropped from the end (``cut``
    says how many), and a raw text truncated."""
    encoded = len(json.dumps(answer, separators=(",", ":")))
    if encoded <= limit:
        return answer
    fitted = dict(answer)
    if isinstance(fitted.get("raw"), str):
        fitted["raw"] = fitted["raw"].encode("utf-8")[: limit - 200].decode("utf-8", "ignore")
        return fitted
    items = list(fitted.get("items") or [])
    dropped = 0
    while items and len(json.dumps({**fitted, "items": items})) > limit:
        keep = max(0, len(items) * 3 // 4)
        dropped += len(items) - keep
        items = items[:keep]
    fitted["items"] = items
    fitted["cut"] = dropped
    return fitted


def problem_of(error: ApiError) -> dict[str, Any]:
    """An :class:`ApiError` as JSON, to cross the cluster link."""
    return {
        "status": error.status,
        "title": error.title,
        "detail": error.detail,
        "code": error.code,
        "remediation": error.remediation,
    }


def error_of(problem: Mapping[str, Any]) -> ApiError:
    """The :class:`ApiError` that :func:`problem_of` described."""
    return ApiError(
        int(problem.get("status", 500)),
        str(problem.get("title", "Wazuh Internal Error")),
        str(problem.get("detail", "")),
        problem.get("code"),
        problem.get("remediation"),
    )
