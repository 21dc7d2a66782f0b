"""Load a node's ruleset from HOME into an :class:`~wazuhcluster.analysis.engine.Engine`.

Decoder and rule directories are read in the configured order, each directory's ``*.xml``
files in name order, skipping the excluded file names. CDB lists are read from their text
form; a rule names a list by its HOME-relative path (``etc/lists/audit-keys``). A broken
file raises :class:`RulesetError` with the file, the line and the reason.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources

from wazuhcluster.analysis.alerts import Identity
from wazuhcluster.analysis.cdb import ListError, load_list
from wazuhcluster.analysis.decoder_loader import DecoderBuilder, DecoderLoadError
from wazuhcluster.analysis.engine import Engine
from wazuhcluster.analysis.rule_loader import RuleBuilder, RuleLoadError
from wazuhcluster.analysis.xmlreader import RulesetSyntaxError, parse_file
from wazuhcluster.config.analysis_settings import RulesetSettings

RulesetError = RulesetSyntaxError
MAX_FILES = 10_000

__all__ = [
    "DecoderLoadError",
    "RuleLoadError",
    "RulesetError",
    "install_default_ruleset",
    "load_engine",
]


def _xml_files(
    home: str, directories: tuple[str, ...], files: tuple[str, ...], excludes: tuple[str, ...]
) -> list[str]:
    found: list[str] = []
    for directory in directories:
        full = os.path.join(home, directory)
        if not os.path.isdir(full):
            continue
        for name in sorted(os.listdir(full)):
            if name.endswith(".xml") and name not in excludes:
                path = os.path.join(full, name)
                if os.path.isfile(path):
                    found.append(path)
    for name in files:
        path = os.path.join(home, name)
        if os.path.basename(path) not in excludes:
            found.append(path)
    if len(found) > MAX_FILES:
        raise RulesetError(home, 0, f"more than {MAX_FILES} ruleset files")
    return found


def _list_names(home: str, settings: RulesetSettings) -> list[str]:
    if settings.lists is not None:
        return list(settings.lists)
    names = []
    base = os.path.join(home, "etc", "lists")
    for directory, subdirs, files in os.walk(base):
        subdirs.sort()
        for name in sorted(files):
            if not name.endswith((".cdb", ".tmp")):
                names.append(os.path.relpath(os.path.join(directory, name), home))
    return names


def load_lists(home: str, settings: RulesetSettings) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Read every configured CDB list; return them by name and the warnings."""
    lists: dict[str, dict[str, str]] = {}
    warnings = []
    for name in _list_names(home, settings):
        path = os.path.join(home, name)
        try:
            lists[name] = load_list(path)
        except ListError as error:
            warnings.append(str(error))
    return lists, warnings


def load_engine(
    home: str, settings: RulesetSettings | None = None, identity: Identity | None = None
) -> Engine:
    """Build an engine from the decoders, rules and lists of ``home``."""
    settings = settings or RulesetSettings()
    lists, warnings = load_lists(home, settings)
    decoders = DecoderBuilder()
    for path in _xml_files(
        home, settings.decoder_dirs, settings.decoder_files, settings.decoder_excludes
    ):
        decoders.add_file(parse_file(path), path)
    decoder_set = decoders.result()

    def resolve(name: str) -> dict[str, str] | None:
        """The list a rule names (with or without the .cdb suffix Wazuh also accepts)."""
        found = lists.get(name)
        if found is None and name.endswith(".cdb"):
            found = lists.get(name[:-4])
        return found

    rules = RuleBuilder(
        decoder_set.names, resolve, settings.log_alert_level, settings.email_alert_level
    )
    rule_files = _xml_files(home, settings.rule_dirs, settings.rule_files, settings.rule_excludes)
    if not rule_files:
        raise RulesetError(home, 0, "no rule files found in " + ", ".join(settings.rule_dirs))
    for path in rule_files:
        rules.add_file(parse_file(path), path)
    return Engine(
        decoder_set,
        rules.roots,
        identity,
        settings.log_alert_level,
        warnings + rules.warnings,
        rules.history_windows(),
    )


def install_default_ruleset(home: str, overwrite: bool = False) -> list[str]:
    """Copy the project's default ruleset into ``home`` (ruleset/ and etc/lists/).

    Existing files are kept unless ``overwrite``; returns the HOME-relative paths written.
    """
    written = []
    source = resources.files("wazuhcluster").joinpath("data", "ruleset")
    targets = {"decoders": "ruleset/decoders", "rules": "ruleset/rules", "lists": "etc/lists"}
    for folder, target in targets.items():
        branch = source.joinpath(folder)
        if not branch.is_dir():
            continue
        os.makedirs(os.path.join(home, target), exist_ok=True)
        for entry in sorted(branch.iterdir(), key=lambda e: e.name):
            if not entry.is_file() or entry.name.startswith((".", "__")):
                continue
            relative = f"{target}/{entry.name}"
            destination = os.path.join(home, relative)
            if os.path.exists(destination) and not overwrite:
                continue
            with entry.open("rb") as reader, open(destination + ".tmp", "wb") as writer:
                shutil.copyfileobj(reader, writer)
            os.replace(destination + ".tmp", destination)
            written.append(relative)
    for folder in ("etc/decoders", "etc/rules"):
        os.makedirs(os.path.join(home, folder), exist_ok=True)
    return written
