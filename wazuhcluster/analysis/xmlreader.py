"""A lenient reader for Wazuh ruleset XML files.

Ruleset files are not strict XML: a file holds several root elements, text may contain a raw
``&`` and a ``<`` escaped with a backslash (``\\<``, an OS_Regex escape), and ``<var>``
definitions are substituted as ``$NAME`` in later text and attribute values. Text is kept
raw (no entity decoding), as Wazuh does. Every element remembers its line for error reports.
"""

from __future__ import annotations

import re

import attrs

MAX_FILE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z_][\w.\-:]*")
_ATTR = re.compile(r"\s*([A-Za-z_][\w.\-:]*)\s*=\s*(\"[^\"]*\"|'[^']*')")
_VAR_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class RulesetSyntaxError(Exception):
    """A ruleset file that cannot be read, with the file, the line and the reason."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(path, line, reason)
        self.path = path
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@attrs.define
class Node:
    """One element: its tag, attributes, raw text, children and line number."""

    tag: str
    attributes: dict[str, str]
    line: int
    text: str = ""
    children: list[Node] = attrs.field(factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return an attribute value, matching its name case-insensitively."""
        lowered = name.lower()
        for key, value in self.attributes.items():
            if key.lower() == lowered:
                return value
        return default


def parse_text(text: str, path: str) -> list[Node]:
    """Parse ``text`` into its top-level elements, applying ``<var>`` substitutions."""
    roots = _Parser(text, path).parse()
    variables: dict[str, str] = {}
    kept = []
    for node in roots:
        if node.tag.lower() == "var":
            name = node.get("name")
            if not name:
                raise RulesetSyntaxError(path, node.line, "<var> without a name attribute")
            variables[name] = _substitute(node.text, variables)
        else:
            kept.append(node)
    if variables:
        for node in kept:
            _apply_variables(node, variables)
    return kept


def parse_file(path: str) -> list[Node]:
    """Read and parse one ruleset file (bounded in size)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise RulesetSyntaxError(path, 0, f"cannot read: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise RulesetSyntaxError(path, 0, f"larger than {MAX_FILE_BYTES} bytes")
    return parse_text(data.decode("utf-8", errors="replace"), path)


def _substitute(text: str, variables: dict[str, str]) -> str:
    if "$" not in text:
        return text
    return _VAR_REF.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _apply_variables(node: Node, variables: dict[str, str]) -> None:
    node.text = _substitute(node.text, variables)
    node.attributes = {k: _substitute(v, variables) for k, v in node.attributes.items()}
    for child in node.children:
        _apply_variables(child, variables)


class _Parser:
    """A small recursive-descent reader; see the module docstring for the dialect."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.pos = 0

    def line(self, pos: int | None = None) -> int:
        """The 1-based line number of ``pos`` (default: the current position)."""
        return self.text.count("\n", 0, self.pos if pos is None else pos) + 1

    def fail(self, reason: str, pos: int | None = None) -> RulesetSyntaxError:
        """An error at ``pos`` (default: the current position)."""
        return RulesetSyntaxError(self.path, self.line(pos), reason)

    def parse(self) -> list[Node]:
        """Read every top-level element."""
        roots: list[Node] = []
        while True:
            self.skip_misc()
            if self.pos >= len(self.text):
                return roots
            if self.text.startswith("</", self.pos):
                raise self.fail("closing tag without an opening tag")
            if self.text[self.pos] != "<":
                raise self.fail("text outside of any element")
            roots.append(self.element())

    def skip_misc(self) -> None:
        """Skip blanks, comments and declarations between elements."""
        text = self.text
        while True:
            while self.pos < len(text) and text[self.pos].isspace():
                self.pos += 1
            if text.startswith("<!--", self.pos):
                end = text.find("-->", self.pos + 4)
                if end < 0:
                    raise self.fail("unterminated comment")
                self.pos = end + 3
            elif text.startswith("<?", self.pos):
                end = text.find("?>", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated declaration")
                self.pos = end + 2
            elif text.startswith("<!", self.pos):
                raise self.fail("DOCTYPE and other declarations are not allowed")
            else:
                return

    def element(self) -> Node:
        """Read one element starting at its '<'."""
        start = self.pos
        self.pos += 1
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected an element name")
        tag = match.group(0)
        self.pos = match.end()
        attributes: dict[str, str] = {}
        while True:
            attr = _ATTR.match(self.text, self.pos)
            if attr is None:
                break
            attributes[attr.group(1)] = attr.group(2)[1:-1]
            self.pos = attr.end()
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        node = Node(tag, attributes, self.line(start))
        if self.text.startswith("/>", self.pos):
            self.pos += 2
            return node
        if not self.text.startswith(">", self.pos):
            raise self.fail(f"malformed start tag <{tag}>")
        self.pos += 1
        self.content(node)
        return node

    def content(self, node: Node) -> None:
        """Read the text and children of ``node`` up to its closing tag."""
        text = self.text
        pieces: list[str] = []
        while True:
            lt = text.find("<", self.pos)
            while lt > 0 and _escaped(text, lt):
                lt = text.find("<", lt + 1)
            if lt < 0:
                raise self.fail(f"element <{node.tag}> is never closed", node_pos(self, node))
            pieces.append(text[self.pos : lt])
            self.pos = lt
            if text.startswith("<!--", lt):
                end = text.find("-->", lt + 4)
                if end < 0:
                    raise self.fail("unterminated comment")
                self.pos = end + 3
            elif text.startswith("</", lt):
                end = text.find(">", lt)
                name = text[lt + 2 : end].strip() if end > 0 else ""
                if name != node.tag:
                    raise self.fail(f"</{name}> closes <{node.tag}> (line {node.line})")
                self.pos = end + 1
                if not node.children:
                    node.text = "".join(pieces)
                return
            else:
                node.children.append(self.element())


def _escaped(text: str, index: int) -> bool:
    """True when an odd run of backslashes precedes ``text[index]``."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def node_pos(parser: _Parser, node: Node) -> int:
    """The offset of the first character of ``node``'s line (for error reports)."""
    offset = 0
    for _ in range(node.line - 1):
        offset = parser.text.index("\n", offset) + 1
    return offset
