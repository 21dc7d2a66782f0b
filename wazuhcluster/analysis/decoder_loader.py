"""Build :class:`~wazuhcluster.analysis.decoders.Decoder` objects from ruleset XML."""

from __future__ import annotations

from wazuhcluster.analysis.decoders import (
    AFTER_PARENT,
    AFTER_PREMATCH,
    AFTER_REGEX,
    PLUGINS,
    Decoder,
    DecoderSet,
)
from wazuhcluster.analysis.expressions import Expression, ExpressionError, compile_expression
from wazuhcluster.analysis.xmlreader import Node, RulesetSyntaxError

DECODER_TYPES = (
    "firewall",
    "ids",
    "web-log",
    "syslog",
    "squid",
    "windows",
    "host-information",
    "ossec",
)
OFFSETS = (AFTER_PARENT, AFTER_PREMATCH, AFTER_REGEX)
MAX_ORDER = 256
_KNOWN = {
    "parent",
    "regex",
    "prematch",
    "program_name",
    "order",
    "type",
    "use_own_name",
    "plugin_decoder",
    "fts",
    "ftscomment",
    "accumulate",
    "json_null_field",
    "json_array_structure",
    "var",
}


class DecoderLoadError(RulesetSyntaxError):
    """A decoder that Wazuh would refuse to load."""


def _offset(node: Node, path: str, name: str) -> str | None:
    value = node.get("offset")
    if value is None:
        return None
    value = value.strip().lower()
    if value not in OFFSETS:
        raise DecoderLoadError(path, node.line, f"decoder {name}: invalid offset {value!r}")
    return value


def _compile(
    node: Node,
    kind_attribute: str | None,
    default: str,
    allowed: tuple[str, ...],
    text: str,
    path: str,
    name: str,
) -> Expression:
    kind = (kind_attribute or default).lower()
    if kind not in allowed:
        kind = default
    try:
        return compile_expression(kind, text)
    except ExpressionError as error:
        raise DecoderLoadError(path, node.line, f"decoder {name}: <{node.tag}>: {error}") from None


class DecoderBuilder:
    """Reads decoder files one after another into the two root lists."""

    def __init__(self) -> None:
        self.with_program: list[Decoder] = []
        self.without_program: list[Decoder] = []

    def add_file(self, nodes: list[Node], path: str) -> None:
        """Add every ``<decoder>`` of one file."""
        for node in nodes:
            if node.tag.lower() != "decoder":
                continue
            decoder = self.build(node, path)
            self.insert(decoder, path, node.line)

    def build(self, node: Node, path: str) -> Decoder:
        """Compile one ``<decoder>`` element."""
        name = node.get("name")
        if not name:
            raise DecoderLoadError(path, node.line, "<decoder> without a name attribute")
        decoder = Decoder(name=name, source=path, line=node.line)
        # Repeated <regex>, <prematch> or <program_name> elements are one expression: the
        # texts joined, the offset of the first element, the type of the last (as Wazuh reads
        # them: each element sets the type, a missing type attribute resets it to the default).
        texts: dict[str, tuple[Node, str, str | None]] = {}
        for child in node.children:
            tag = child.tag.lower()
            text = child.text
            if tag in ("regex", "prematch", "program_name"):
                previous = texts.get(tag)
                if previous is not None and child.get("offset"):
                    raise DecoderLoadError(
                        path, child.line, f"decoder {name}: only the first <{tag}> has an offset"
                    )
                texts[tag] = (
                    previous[0] if previous else child,
                    (previous[1] if previous else "") + text,
                    child.get("type"),
                )
            elif tag == "parent":
                decoder.parent = text.strip()
            elif tag == "order":
                words = [w.strip().split(" ")[0] for w in text.split(",")]
                if any(not w for w in words) or len(words) > MAX_ORDER:
                    raise DecoderLoadError(path, child.line, f"decoder {name}: bad <order>")
                decoder.order = tuple(words)
            elif tag == "type":
                if text.strip() not in DECODER_TYPES:
                    raise DecoderLoadError(
                        path, child.line, f"decoder {name}: unknown type {text.strip()!r}"
                    )
                decoder.type = text.strip()
            elif tag == "use_own_name":
                decoder.use_own_name = text.strip() == "true"
            elif tag == "plugin_decoder":
                plugin = PLUGINS.get(text.strip())
                if plugin is None:
                    raise DecoderLoadError(
                        path, child.line, f"decoder {name}: unknown plugin {text.strip()!r}"
                    )
                decoder.plugin = plugin
                decoder.plugin_offset = _offset(child, path, name)
            elif tag == "fts":
                decoder.fts = tuple(w.strip() for w in text.split(",") if w.strip())
            elif tag == "accumulate":
                decoder.accumulate = True
            elif tag == "json_null_field":
                value = text.strip().lower()
                decoder.json_null = "discard" if value == "discard" else "string"
            elif tag == "json_array_structure":
                decoder.json_array = "csv" if text.strip().lower() == "csv" else "array"
            elif tag not in _KNOWN:
                raise DecoderLoadError(path, child.line, f"decoder {name}: unknown <{child.tag}>")
        if "prematch" in texts:
            element, text, kind = texts["prematch"]
            decoder.prematch = _compile(
                element, kind, "osregex", ("osregex", "pcre2"), text, path, name
            )
            decoder.prematch_offset = _offset(element, path, name)
        if "program_name" in texts:
            element, text, kind = texts["program_name"]
            decoder.program_name = _compile(
                element, kind, "osmatch", ("osmatch", "osregex", "pcre2"), text, path, name
            )
        if "regex" in texts:
            element, text, kind = texts["regex"]
            decoder.regex = _compile(
                element, kind, "osregex", ("osregex", "pcre2"), text, path, name
            )
            decoder.regex_offset = _offset(element, path, name)
        self._validate(decoder, path, node.line)
        decoder.index()
        return decoder

    @staticmethod
    def _validate(decoder: Decoder, path: str, line: int) -> None:
        name = decoder.name
        if decoder.prematch is None and decoder.parent is None and decoder.program_name is None:
            raise DecoderLoadError(
                path, line, f"decoder {name}: needs a prematch, parent or program_name"
            )
        if (decoder.regex is None) != (not decoder.order) and decoder.plugin is None:
            raise DecoderLoadError(path, line, f"decoder {name}: <regex> and <order> go together")
        if decoder.regex_offset == AFTER_PARENT and decoder.parent is None:
            raise DecoderLoadError(path, line, f"decoder {name}: after_parent without a parent")
        if decoder.regex_offset == AFTER_PREMATCH:
            if decoder.parent is None:
                decoder.regex_offset = AFTER_PARENT
            elif decoder.prematch is None:
                raise DecoderLoadError(
                    path, line, f"decoder {name}: after_prematch without a prematch"
                )
        if decoder.regex_offset == AFTER_REGEX and (
            decoder.parent is None or decoder.regex is None
        ):
            raise DecoderLoadError(
                path, line, f"decoder {name}: after_regex needs a parent and a regex"
            )
        if decoder.prematch_offset not in (None, AFTER_PARENT) or (
            decoder.prematch_offset == AFTER_PARENT and decoder.parent is None
        ):
            raise DecoderLoadError(path, line, f"decoder {name}: invalid prematch offset")
        if decoder.plugin is not None and decoder.regex is not None:
            raise DecoderLoadError(path, line, f"decoder {name}: a plugin takes no regex")

    def insert(self, decoder: Decoder, path: str, line: int) -> None:
        """Attach ``decoder`` as a root or as a child of every root with its parent's name."""
        if decoder.parent is None:
            roots = self.with_program if decoder.program_name is not None else self.without_program
            if decoder.regex_offset == AFTER_REGEX:
                raise DecoderLoadError(path, line, f"decoder {decoder.name}: root with after_regex")
            roots.append(decoder)
            return
        added = False
        for root in self.with_program + self.without_program:
            if root.name != decoder.parent:
                continue
            self._add_child(root, decoder, path, line)
            added = True
        if not added:
            raise DecoderLoadError(
                path, line, f"decoder {decoder.name}: parent {decoder.parent!r} not found"
            )

    @staticmethod
    def _add_child(root: Decoder, decoder: Decoder, path: str, line: int) -> None:
        chained = False
        for sibling in root.children:
            if sibling.name == decoder.name:
                if decoder.prematch is not None:
                    raise DecoderLoadError(
                        path,
                        line,
                        f"decoder {decoder.name}: a repeated child cannot have a prematch",
                    )
                if (sibling.regex or sibling.plugin) and (decoder.regex or decoder.plugin):
                    sibling.get_next = True
                    chained = True
                else:
                    raise DecoderLoadError(
                        path, line, f"decoder {decoder.name}: repeated child without a regex"
                    )
        if decoder.regex_offset == AFTER_REGEX and not chained:
            raise DecoderLoadError(
                path,
                line,
                f"decoder {decoder.name}: after_regex needs a previous decoder of the same name",
            )
        if not decoder.use_own_name:
            decoder.reported_name = root.name
        decoder.reported_parent = root.name
        root.children.append(decoder)

    def result(self) -> DecoderSet:
        """The decoders loaded so far."""
        return DecoderSet(self.with_program, self.without_program)
