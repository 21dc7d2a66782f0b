"""The master's ruleset files as the API reads and changes them: rules, decoders, CDB lists.

Blocking functions (run them in a thread). :class:`RulesetFiles` finds the files where
the analysis engine loads them from (``<ruleset>`` of the node's configuration), turns
them into Wazuh's items (a rule, a decoder, a list with its pairs), and changes a file of
the user folders (``etc/rules``, ``etc/decoders``, ``etc/lists``, the ones the master
syncs to the workers) only after the whole resulting ruleset loaded from a staged copy.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wazuhcluster.analysis.cdb import ListError, parse_list
from wazuhcluster.analysis.loader import RulesetError, load_engine
from wazuhcluster.analysis.xmlreader import Node, RulesetSyntaxError, parse_file, parse_text
from wazuhcluster.api.errors import ApiError, wazuh_error
from wazuhcluster.config.analysis_settings import RulesetSettings
from wazuhcluster.util.files import write_atomically
from wazuhcluster.util.json_tree import put_repeated

#: The folder each family writes to (synced to the workers).
USER_DIRS = {"rules": "etc/rules", "decoders": "etc/decoders", "lists": "etc/lists"}
#: The largest ruleset file accepted through the API.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Compliance groups: their prefix in a rule's groups, and the item field they fill.
COMPLIANCE = {
    "pci_dss": "pci_dss_",
    "gdpr": "gdpr_",
    "gpg13": "gpg13_",
    "hipaa": "hipaa_",
    "nist_800_53": "nist_800_53_",
    "tsc": "tsc_",
}
_XML_NAME = re.compile(r"[\w.\-]{1,200}\.xml", re.ASCII)
_LIST_NAME = re.compile(r"[\w.\-]{1,200}", re.ASCII)


def check_name(kind: str, name: str) -> str:
    """Refuse a file name that is not a plain name of the family (1801)."""
    pattern = _LIST_NAME if kind == "lists" else _XML_NAME
    if pattern.fullmatch(name) is None or name.startswith(".") or name.endswith(".cdb"):
        raise wazuh_error(1801, name[:64])
    return name


class RulesetFiles:
    """The ruleset files of one home (see module docstring)."""

    def __init__(self, root: Path, settings: RulesetSettings) -> None:
        self.root = root
        self.settings = settings
        #: Changes made through the API (a logtest engine older than this is reloaded).
        self.generation = 0

    # --- finding files ------------------------------------------------------------------
    def files(self, kind: str) -> list[dict[str, str]]:
        """The family's files: filename, relative_dirname, status (enabled/disabled)."""
        settings = self.settings
        if kind == "lists":
            return self._list_files()
        if kind == "rules":
            dirs, extra, excludes = settings.rule_dirs, settings.rule_files, settings.rule_excludes
        else:
            dirs = settings.decoder_dirs
            extra, excludes = settings.decoder_files, settings.decoder_excludes
        found: list[dict[str, str]] = []
        for directory in dirs:
            folder = self.root / directory
            if not folder.is_dir():
                continue
            for name in sorted(os.listdir(folder)):
                if name.endswith(".xml") and (folder / name).is_file():
                    status = "disabled" if name in excludes else "enabled"
                    found.append(_file(name, directory, status))
        for path in extra:
            directory, name = os.path.split(path)
            found.append(_file(name, directory, "disabled" if name in excludes else "enabled"))
        return found

    def _list_files(self) -> list[dict[str, str]]:
        base = self.root / USER_DIRS["lists"]
        found: list[dict[str, str]] = []
        for directory, subdirs, names in os.walk(base):
            subdirs.sort()
            relative = os.path.relpath(directory, self.root)
            for name in sorted(names):
                if not name.endswith((".cdb", ".tmp")) and not name.startswith("."):
                    found.append({"filename": name, "relative_dirname": relative})
        return found

    def find(self, kind: str, name: str, relative_dirname: str | None = None) -> Path:
        """The file called ``name`` of the family (in ``relative_dirname`` when given)."""
        for entry in self.files(kind):
            if entry["filename"] == name and relative_dirname in (None, entry["relative_dirname"]):
                return self.root / entry["relative_dirname"] / name
        raise wazuh_error(1906, name)

    def read(self, path: Path) -> str:
        """A ruleset file's text (bounded)."""
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        return data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")

    # --- items --------------------------------------------------------------------------
    def rules(self) -> list[dict[str, Any]]:
        """Every rule of every rule file, in Wazuh's item shape."""
        items: list[dict[str, Any]] = []
        for entry in self.files("rules"):
            for node in _nodes(self.root / entry["relative_dirname"] / entry["filename"]):
                if node.tag.lower() != "group":
                    continue
                groups = [g.strip() for g in (node.get("name") or "").split(",") if g.strip()]
                for child in node.children:
                    if child.tag.lower() == "rule":
                        items.append(rule_item(child, groups, entry))
        return items

    def decoders(self) -> list[dict[str, Any]]:
        """Every decoder of every decoder file, in Wazuh's item shape."""
        items: list[dict[str, Any]] = []
        for entry in self.files("decoders"):
            positions: dict[str, int] = {}
            for node in _nodes(self.root / entry["relative_dirname"] / entry["filename"]):
                if node.tag.lower() != "decoder":
                    continue
                name = node.get("name") or ""
                position = positions.get(name, 0)
                positions[name] = position + 1
                items.append(decoder_item(node, position, entry))
        return items

    def lists(self) -> list[dict[str, Any]]:
        """Every CDB list with its pairs."""
        items = []
        for entry in self._list_files():
            path = self.root / entry["relative_dirname"] / entry["filename"]
            try:
                pairs = parse_list(self.read(path))
            except (ListError, OSError):
                continue
            items.append({**entry, "items": [{"key": k, "value": v} for k, v in pairs.items()]})
        return items

    # --- changes ------------------------------------------------------------------------
    def put(self, kind: str, name: str, data: bytes, overwrite: bool) -> str:
        """Validate the ruleset with ``data`` as the user file ``name``, then write it;
        returns its HOME-relative path."""
        check_name(kind, name)
        if not data.strip():
            raise wazuh_error(1112)
        relative = f"{USER_DIRS[kind]}/{name}"
        target = self.root / relative
        if target.exists() and not overwrite:
            raise wazuh_error(1905, relative)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise wazuh_error(1113, f"{relative}: not UTF-8 text (byte {error.start})") from None
        if kind == "lists":
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip() and ":" not in line:
                    raise wazuh_error(1800, f"{relative}:{number}: no 'key:value' pair")
        else:
            try:
                parse_text(text, relative)
            except RulesetSyntaxError as error:
                raise wazuh_error(1113, str(error)) from None
        self.check_loads(relative, data)
        write_atomically(target, data, mode=0o660)
        self.generation += 1
        return relative

    def delete(self, kind: str, name: str) -> str:
        """Remove the user file ``name`` once the ruleset loads without it."""
        check_name(kind, name)
        relative = f"{USER_DIRS[kind]}/{name}"
        target = self.root / relative
        if not target.is_file():
            raise wazuh_error(1906, relative)
        self.check_loads(relative, None)
        target.unlink()
        self.generation += 1
        return relative

    def check_loads(self, relative: str, data: bytes | None) -> None:
        """Load the whole ruleset from a staged copy where ``relative`` holds ``data`` (or
        is gone); refuse with the file, line and reason when it does not load."""
        settings = self.settings
        with tempfile.TemporaryDirectory(prefix="wazuh-ruleset-") as staged:
            wanted = [
                *settings.decoder_dirs,
                *settings.rule_dirs,
                *settings.decoder_files,
                *settings.rule_files,
                USER_DIRS["lists"],
                *(settings.lists or ()),
            ]
            for item in dict.fromkeys(wanted):
                source = self.root / item
                destination = Path(staged) / item
                if source.is_dir():
                    shutil.copytree(source, destination, dirs_exist_ok=True)
                elif source.is_file():
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, destination)
            path = Path(staged) / relative
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            try:
                load_engine(staged, settings)
            except RulesetError as error:
                shown = os.path.relpath(error.path, staged) if error.path else relative
                raise wazuh_error(1113, f"{shown}:{error.line}: {error.reason}") from None
            except (ListError, ValueError) as error:
                raise wazuh_error(1113, f"{relative}: {error}") from None


def _file(name: str, directory: str, status: str) -> dict[str, str]:
    return {"filename": name, "relative_dirname": directory, "status": status}


def _nodes(path: Path) -> list[Node]:
    try:
        return parse_file(str(path))
    except RulesetSyntaxError:
        return []


def _pattern(node: Node) -> Any:
    if node.attributes:
        return {"pattern": node.text.strip(), **node.attributes}
    return {"pattern": node.text.strip()}


_PATTERNED = {
    "match",
    "regex",
    "field",
    "prematch",
    "program_name",
    "srcip",
    "dstip",
    "user",
    "url",
    "location",
    "hostname",
    "action",
    "id",
    "status",
    "system_name",
    "protocol",
    "data",
    "extra_data",
}


def rule_item(node: Node, file_groups: list[str], entry: dict[str, str]) -> dict[str, Any]:
    """One ``<rule>`` as Wazuh's rule item."""
    groups = list(file_groups)
    compliance: dict[str, list[str]] = {field: [] for field in COMPLIANCE}
    mitre: list[str] = []
    details: dict[str, Any] = {
        key: value for key, value in node.attributes.items() if key not in ("id", "level")
    }
    description = ""
    for child in node.children:
        tag = child.tag.lower()
        text = child.text.strip()
        if tag == "description":
            description = text
        elif tag == "group":
            groups.extend(g.strip() for g in text.split(",") if g.strip())
        elif tag in compliance:
            compliance[tag].extend(v.strip() for v in text.split(",") if v.strip())
        elif tag == "mitre":
            mitre.extend(grand.text.strip() for grand in child.children if grand.text.strip())
        elif tag in ("info", "options"):
            details.setdefault(tag, []).append(text)
        else:
            value = _pattern(child) if tag in _PATTERNED else text
            if tag in details:
                held = details[tag]
                details[tag] = [*(held if isinstance(held, list) else [held]), value]
            else:
                details[tag] = value
    plain = []
    for group in groups:
        for field, prefix in COMPLIANCE.items():
            if group.startswith(prefix):
                compliance[field].append(group[len(prefix) :])
                break
        else:
            plain.append(group)
    return {
        "filename": entry["filename"],
        "relative_dirname": entry["relative_dirname"],
        "id": _int(node.get("id")),
        "level": _int(node.get("level")),
        "status": entry["status"],
        "details": details,
        **compliance,
        "mitre": mitre,
        "groups": plain,
        "description": description,
    }


def decoder_item(node: Node, position: int, entry: dict[str, str]) -> dict[str, Any]:
    """One ``<decoder>`` as Wazuh's decoder item."""
    details: dict[str, Any] = {}
    for child in node.children:
        tag = child.tag.lower()
        value = _pattern(child) if tag in ("prematch", "regex", "program_name") else child.text
        if tag in details:
            held = details[tag]
            details[tag] = [*(held if isinstance(held, list) else [held]), value]
        else:
            details[tag] = value.strip() if isinstance(value, str) else value
    return {
        "filename": entry["filename"],
        "relative_dirname": entry["relative_dirname"],
        "status": entry["status"],
        "name": node.get("name") or "",
        "position": position,
        "details": details,
    }


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def xml_json(text: str, path: str) -> dict[str, Any]:
    """A ruleset file as JSON the way Wazuh shows it: ``@`` attributes, ``#text``, a tag
    seen twice becomes a list."""
    try:
        nodes = parse_text(text, path)
    except RulesetSyntaxError as error:
        raise wazuh_error(1113, str(error)) from None
    document: dict[str, Any] = {}
    for node in nodes:
        put_repeated(document, node.tag, _node_json(node))
    return document


def _node_json(node: Node) -> Any:
    text = node.text.strip()
    if not node.attributes and not node.children:
        return text
    value: dict[str, Any] = {f"@{key}": item for key, item in node.attributes.items()}
    for child in node.children:
        put_repeated(value, child.tag, _node_json(child))
    if text:
        value["#text"] = text
    return value


__all__ = ["ApiError", "RulesetFiles", "check_name", "xml_json"]
