"""Build :class:`~wazuhcluster.analysis.rules.Rule` objects from ruleset XML and grow the tree."""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from wazuhcluster.analysis import cdb
from wazuhcluster.analysis.compiled import COMPILED_RULES
from wazuhcluster.analysis.expressions import (
    Expression,
    ExpressionError,
    OSMatch,
    compile_expression,
)
from wazuhcluster.analysis.rules import (
    IPList,
    ListCheck,
    Rule,
    add_sorted,
    parse_ip_entry,
)
from wazuhcluster.analysis.xmlreader import Node, RulesetSyntaxError

CATEGORIES = ("firewall", "ids", "syslog", "web-log", "squid", "windows", "ossec")
MAX_LEVEL = 16

# Element -> (expression key, default type). Concatenated when repeated, like Wazuh does.
_EXPRESSION_ELEMENTS = {
    "match": "osmatch",
    "regex": "osregex",
    "program_name": "osmatch",
    "id": "osmatch",
    "system_name": "osmatch",
    "protocol": "osmatch",
    "action": "string",
    "url": "osmatch",
    "location": "osmatch",
    "data": "osmatch",
    "extra_data": "osmatch",
    "hostname": "osmatch",
    "status": "osmatch",
    "srcport": "osmatch",
    "dstport": "osmatch",
    "srcgeoip": "osmatch",
    "dstgeoip": "osmatch",
    "user": "osmatch",
}
_SAME = {
    "same_source_ip": "srcip",
    "same_srcip": "srcip",
    "same_dstip": "dstip",
    "same_src_port": "srcport",
    "same_srcport": "srcport",
    "same_dst_port": "dstport",
    "same_dstport": "dstport",
    "same_protocol": "protocol",
    "same_action": "action",
    "same_id": "id",
    "same_url": "url",
    "same_data": "data",
    "same_extra_data": "extra_data",
    "same_status": "status",
    "same_system_name": "system_name",
    "same_srcgeoip": "srcgeoip",
    "same_dstgeoip": "dstgeoip",
    "same_location": "location",
    "same_srcuser": "srcuser",
    "same_user": "dstuser",
}
_DIFFERENT = {
    "different_srcip": "srcip",
    "not_same_source_ip": "srcip",
    "different_dstip": "dstip",
    "different_src_port": "srcport",
    "different_srcport": "srcport",
    "different_dst_port": "dstport",
    "different_dstport": "dstport",
    "different_protocol": "protocol",
    "different_action": "action",
    "different_id": "id",
    "not_same_id": "id",
    "different_url": "url",
    "different_data": "data",
    "different_extra_data": "extra_data",
    "different_status": "status",
    "different_system_name": "system_name",
    "different_srcgeoip": "srcgeoip",
    "different_dstgeoip": "dstgeoip",
    "different_srcuser": "srcuser",
    "different_user": "dstuser",
    "not_same_user": "dstuser",
    "different_location": "location",
}
_IGNORED_ELEMENTS = {"check_diff", "cve", "same_agent", "not_same_agent", "var", "if_matched_regex"}
_DAYS = {
    "sunday": {0},
    "sun": {0},
    "monday": {1},
    "mon": {1},
    "tuesday": {2},
    "tue": {2},
    "wednesday": {3},
    "wed": {3},
    "thursday": {4},
    "thu": {4},
    "friday": {5},
    "fri": {5},
    "saturday": {6},
    "sat": {6},
    "weekdays": {1, 2, 3, 4, 5},
    "weekends": {0, 6},
}
_HOUR = re.compile(r"\s*(\d{1,2})(?::(\d\d))?\s*(am|pm)?\s*$", re.IGNORECASE)

ListResolver = Callable[[str], "dict[str, str] | None"]


class RuleLoadError(RulesetSyntaxError):
    """A rule that Wazuh would refuse to load."""


class _SkipRule(Exception):
    """A rule Wazuh skips with a warning (e.g. it names a list that is not loaded)."""


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true")


#: The ``type`` attribute values a rule option takes (anything else: the option's default,
#: as Wazuh warns and does; ``string`` is only the default of ``<action>``).
_RULE_TYPES = ("osregex", "osmatch", "pcre2")


def _expression(node: Node, default: str, text: str, path: str, rule_id: int) -> Expression:
    kind = (node.get("type") or default).lower()
    if kind not in _RULE_TYPES:
        kind = default
    try:
        return compile_expression(kind, text, _yes(node.get("negate")))
    except ExpressionError as error:
        # As Wazuh: a pattern that does not compile stops the ruleset from loading (for
        # PCRE2 also one using a construct Python's re cannot reproduce, named in the error).
        raise RuleLoadError(path, node.line, f"rule {rule_id}: <{node.tag}>: {error}") from None


def _int_attr(node: Node, name: str, path: str, default: int, low: int, high: int) -> int:
    value = node.get(name)
    if value is None:
        return default
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise RuleLoadError(path, node.line, f"<rule> attribute {name}={value!r} is invalid")
    return int(value)


def parse_time_range(text: str) -> tuple[bool, str, str] | None:
    """Parse ``<time>`` (``[!]h[:mm][am|pm] - h[:mm][am|pm]``) into (negated, from, to)."""
    value = text.strip()
    negated = value.startswith("!")
    if negated:
        value = value[1:]
    parts = value.split("-")
    if len(parts) != 2:
        return None
    hours = []
    for part in parts:
        found = _HOUR.match(part)
        if found is None:
            return None
        hour, minute = int(found.group(1)), int(found.group(2) or 0)
        suffix = (found.group(3) or "").lower()
        if hour >= 24 or minute >= 60:
            return None
        if suffix:
            hour = hour % 12 + (12 if suffix == "pm" else 0)
        hours.append(f"{hour:02d}:{minute:02d}")
    if hours[0] > hours[1]:
        return (True, hours[1], hours[0])
    return (negated, hours[0], hours[1])


def parse_weekdays(text: str) -> tuple[bool, frozenset[int]] | None:
    """Parse ``<weekday>`` (names, ``weekdays``, ``weekends``, optional leading ``!``)."""
    value = text.strip().lower()
    negated = value.startswith("!")
    if negated:
        value = value[1:]
    days: set[int] = set()
    for word in re.split(r"[\s,]+", value):
        if not word:
            continue
        if word not in _DAYS:
            return None
        days |= _DAYS[word]
    return (negated, frozenset(days)) if days else None


class RuleBuilder:
    """Reads rule files one after another into a tree, as analysisd does."""

    def __init__(
        self,
        decoder_names: set[str],
        lists: ListResolver,
        log_alert_level: int = 3,
        email_alert_level: int = 12,
    ) -> None:
        self.decoder_names = decoder_names
        self.lists = lists
        self.log_alert_level = log_alert_level
        self.email_alert_level = email_alert_level
        self.roots: list[Rule] = []
        self.by_id: dict[int, Rule] = {}
        self.warnings: list[str] = []

    def add_file(self, nodes: list[Node], path: str) -> None:
        """Add every ``<group>`` of rules of one file."""
        for group in nodes:
            if group.tag.lower() != "group":
                raise RuleLoadError(path, group.line, f"unexpected <{group.tag}> at top level")
            group_name = group.get("name")
            if group_name is None:
                raise RuleLoadError(path, group.line, "<group> without a name attribute")
            for node in group.children:
                if node.tag.lower() != "rule":
                    raise RuleLoadError(path, node.line, f"unexpected <{node.tag}> in <group>")
                rule = self.build(node, group_name, path)
                if rule is not None:
                    self.insert(rule, path, node.line)

    def build(self, node: Node, group_name: str, path: str) -> Rule | None:
        """Compile one ``<rule>`` element (None when it is a duplicate to skip)."""
        rule_id = _int_attr(node, "id", path, -1, 0, 99_999_999)
        level = _int_attr(node, "level", path, -1, 0, MAX_LEVEL)
        if rule_id < 0 or level < 0:
            raise RuleLoadError(path, node.line, "<rule> needs an id and a level")
        overwrite = _yes(node.get("overwrite"))
        if rule_id in self.by_id and not overwrite:
            self.warnings.append(f"{path}:{node.line}: duplicated rule id {rule_id} skipped")
            return None
        if overwrite and rule_id not in self.by_id:
            overwrite = False
        frequency_text = node.get("frequency")
        frequency = None
        if frequency_text is not None:
            frequency = _int_attr(node, "frequency", path, 0, 2, 9999)
        noalert = (node.get("noalert") or "0").strip() == "1"
        rule = Rule(
            id=rule_id,
            level=level,
            source=path,
            line=node.line,
            sort_level=level * 100 if level else 9900,
            maxsize=_int_attr(node, "maxsize", path, 0, 0, 99_999),
            frequency=frequency,
            timeframe=_int_attr(node, "timeframe", path, 360, 0, 99_999_999),
            ignore_time=_int_attr(node, "ignore", path, 0, 0, 999_999),
            noalert=noalert,
            overwrite=overwrite,
            group_text=group_name,
            mail=level >= self.email_alert_level,
            log_alert=level >= self.log_alert_level,
        )
        texts: dict[str, tuple[Node, str]] = {}
        try:
            for child in node.children:
                self._element(rule, child, texts, path)
        except _SkipRule as skip:
            self.warnings.append(f"{path}:{node.line}: rule {rule_id} skipped: {skip}")
            return None
        for name, (element, text) in texts.items():
            expression = _expression(element, _EXPRESSION_ELEMENTS[name], text, path, rule_id)
            if name == "user":
                rule.user = expression
            else:
                rule.expressions[name] = expression
        if (
            rule.same
            or rule.different
            or rule.same_dynamic
            or rule.different_dynamic
            or rule.frequency
        ) and not rule.context:
            raise RuleLoadError(
                path, node.line, f"rule {rule_id}: frequency/same options need if_matched_*"
            )
        if (
            rule.if_matched_group is not None
            and not rule.if_sid
            and rule.if_group is None
            and not overwrite
        ):
            rule.if_group = rule.if_matched_group.source
        if (
            rule.if_matched_sid is not None
            and not rule.if_sid
            and rule.if_group is None
            and not overwrite
        ):
            rule.if_sid = [rule.if_matched_sid]
        return rule

    def _element(
        self, rule: Rule, child: Node, texts: dict[str, tuple[Node, str]], path: str
    ) -> None:
        tag = child.tag.lower()
        text = child.text
        where = f"rule {rule.id}: <{child.tag}>"
        if tag in _EXPRESSION_ELEMENTS:
            previous = texts.get(tag)
            texts[tag] = (child, (previous[1] if previous else "") + text)
        elif tag == "description":
            rule.description += text.replace("\n", " ", 1)
        elif tag == "group":
            rule.group_text += text.replace("\n", "")
        elif tag == "decoded_as":
            name = text.strip()
            if name not in self.decoder_names:
                raise RuleLoadError(path, child.line, f"{where}: no decoder named {name!r}")
            rule.decoded_as = name
        elif tag == "category":
            if text.strip() not in CATEGORIES:
                raise RuleLoadError(path, child.line, f"{where}: unknown category {text!r}")
            rule.category = text.strip()
        elif tag in ("srcip", "dstip"):
            try:
                entry = parse_ip_entry(text)
            except ValueError:
                raise RuleLoadError(
                    path, child.line, f"{where}: invalid address {text!r}"
                ) from None
            current = getattr(rule, tag)
            entries = (current.networks if current else ()) + (entry,)
            setattr(rule, tag, IPList(entries, _yes(child.get("negate"))))
        elif tag == "field":
            name = (child.get("name") or "").strip()
            if not name:
                raise RuleLoadError(path, child.line, f"{where}: missing name attribute")
            rule.fields.append((name, _expression(child, "osregex", text, path, rule.id)))
        elif tag == "compiled_rule":
            rule.compiled = COMPILED_RULES.get(text.strip())
            if rule.compiled is None:
                raise RuleLoadError(path, child.line, f"{where}: unknown {text.strip()!r}")
        elif tag == "list":
            rule.lists.append(self._list(rule, child, path))
        elif tag == "info":
            rule.info.append(((child.get("type") or "text"), text))
        elif tag == "mitre":
            for item in child.children:
                if item.tag.lower() == "id" and item.text.strip() not in rule.mitre_ids:
                    rule.mitre_ids.append(item.text.strip())
        elif tag == "time":
            rule.day_time = parse_time_range(text)
            if rule.day_time is None:
                raise RuleLoadError(path, child.line, f"{where}: invalid time {text!r}")
        elif tag == "weekday":
            rule.week_days = parse_weekdays(text)
            if rule.week_days is None:
                raise RuleLoadError(path, child.line, f"{where}: invalid weekday {text!r}")
        elif tag == "if_sid":
            for word in re.split(r"[\s,]+", text.strip()):
                if not word:
                    continue
                if not word.isdigit():
                    raise _SkipRule(f"invalid if_sid {text!r}")
                rule.if_sid.append(int(word))
        elif tag == "if_group":
            rule.if_group = (rule.if_group or "") + text
        elif tag == "if_level":
            if not text.strip().isdigit():
                raise RuleLoadError(path, child.line, f"{where}: invalid level {text!r}")
            rule.if_level = int(text)
        elif tag == "if_matched_sid":
            if not text.strip().isdigit():
                raise RuleLoadError(path, child.line, f"{where}: invalid id {text!r}")
            rule.context = True
            rule.if_matched_sid = int(text)
        elif tag == "if_matched_group":
            rule.context = True
            rule.if_matched_group = OSMatch(text)
        elif tag in _SAME:
            rule.same.add(_SAME[tag])
        elif tag in _DIFFERENT:
            rule.different.add(_DIFFERENT[tag])
        elif tag == "same_field":
            rule.same_dynamic.append(text.strip())
        elif tag in ("not_same_field", "different_field"):
            rule.different_dynamic.append(text.strip())
        elif tag == "if_fts":
            rule.if_fts = True
        elif tag == "global_frequency":
            rule.global_frequency = True
        elif tag == "options":
            self._option(rule, text.strip(), path, child.line)
        elif tag in ("ignore", "check_if_ignored"):
            names = [w.strip() for w in text.split(",") if w.strip()]
            if tag == "ignore":
                rule.ignore_fields = names
            else:
                rule.check_ignore_fields = names
        elif tag not in _IGNORED_ELEMENTS:
            raise RuleLoadError(path, child.line, f"{where}: unknown option")

    def _option(self, rule: Rule, option: str, path: str, line: int) -> None:
        if option == "alert_by_email":
            rule.mail = True
        elif option == "no_email_alert":
            rule.mail = False
        elif option == "log_alert":
            rule.log_alert = True
        elif option == "no_log":
            rule.log_alert = False
        elif option == "no_full_log":
            rule.no_full_log = True
        elif option == "no_counter":
            rule.no_counter = True
        elif option != "no_ar":
            self.warnings.append(f"{path}:{line}: rule {rule.id}: unknown option {option!r}")

    def _list(self, rule: Rule, child: Node, path: str) -> ListCheck:
        field = (child.get("field") or "").strip()
        lookup_name = (child.get("lookup") or "match_key").strip().lower()
        try:
            lookup = cdb.Lookup(lookup_name)
        except ValueError:
            raise RuleLoadError(
                path, child.line, f"rule {rule.id}: unknown list lookup {lookup_name!r}"
            ) from None
        if not field:
            raise RuleLoadError(path, child.line, f"rule {rule.id}: <list> without a field")
        check_text = child.get("check_value")
        entries = self.lists(child.text.strip())
        if entries is None:
            raise _SkipRule(f"list {child.text.strip()!r} is not loaded")
        return ListCheck(
            field,
            child.text.strip(),
            lookup,
            OSMatch(check_text) if check_text is not None else None,
            entries,
        )

    # ---- the tree ----------------------------------------------------------------------

    def insert(self, rule: Rule, path: str, line: int) -> None:
        """Place ``rule`` in the tree (or overwrite the rule with the same id)."""
        if rule.overwrite:
            self._overwrite(self.by_id[rule.id], rule)
            return
        if rule.id < 10:
            add_sorted(self.roots, rule)
        elif not self._attach(rule):
            self.warnings.append(f"{path}:{line}: rule {rule.id} has no parent; skipped")
            return
        self.by_id[rule.id] = rule
        self._mark(rule)

    def _attach(self, rule: Rule) -> bool:
        if rule.if_sid:
            added = False
            for sid in rule.if_sid:
                parent = self._find(sid)
                if parent is None:
                    if rule.if_matched_sid is not None:
                        return False
                    continue
                rule.category = parent.category
                add_sorted(parent.children, rule)
                added = True
            return added
        if rule.if_level is not None:
            if rule.if_level == 0:
                return False
            floor = rule.if_level * 100
            return self._attach_where(rule, lambda r: r.sort_level >= floor)
        if rule.if_group is not None:
            alternatives = [a.lower() for a in rule.if_group.split("|") if a]
            return self._attach_where(
                rule, lambda r: any(a in r.group_text.lower() for a in alternatives)
            )
        for root in self.roots:
            if root.category == rule.category:
                add_sorted(root.children, rule)
                return True
        return False

    def _find(self, sid: int) -> Rule | None:
        return self.by_id.get(sid)

    def _attach_where(self, rule: Rule, wanted: Callable[[Rule], bool]) -> bool:
        targets = [r for r in self.by_id.values() if r.id != rule.id and wanted(r)]
        for target in targets:
            add_sorted(target.children, rule)
        return bool(targets)

    def _mark(self, rule: Rule) -> None:
        if rule.if_matched_sid is not None:
            fed = self.by_id.get(rule.if_matched_sid)
            if fed is not None:
                key = ("sid", fed.id)
                if key not in fed.feeds:
                    fed.feeds.append(key)
                rule.search_key = key
            else:
                rule.search_key = ("missing", rule.id)
        elif rule.if_matched_group is not None:
            key = ("group", rule.id)
            rule.search_key = key
            for other in self.by_id.values():
                if rule.if_matched_group.matches(other.group_text) and key not in other.feeds:
                    other.feeds.append(key)

    def history_windows(self) -> dict[tuple[str, int], int]:
        """How long each correlation history must keep events: its rules' longest timeframe."""
        windows: dict[tuple[str, int], int] = {}
        for rule in self.by_id.values():
            if rule.search_key is not None:
                windows[rule.search_key] = max(windows.get(rule.search_key, 0), rule.timeframe)
        return windows

    @staticmethod
    def _overwrite(old: Rule, new: Rule) -> None:
        keep = (
            "id",
            "children",
            "feeds",
            "search_key",
            "if_sid",
            "if_group",
            "if_level",
            "if_matched_sid",
            "if_matched_group",
            "context",
        )
        for field in attrs.fields(Rule):
            if field.name not in keep:
                setattr(old, field.name, getattr(new, field.name))
