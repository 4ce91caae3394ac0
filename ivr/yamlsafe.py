"""The one safe YAML reader: keeps line numbers, rejects duplicate keys, tabs, alias bombs,
oversize and non-UTF-8 files. Config, flows and simulator scripts all load through here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import yaml

from ivr.errors import Problem

_LOGGER = logging.getLogger(__name__)

try:  # libyaml is much faster; fall back to pure Python where it is missing
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

MAX_BYTES = 1_000_000
MAX_NODES = 200_000
MAX_DEPTH = 64  # nesting; far deeper than any flow, well inside Python's recursion limit

Path = tuple[Any, ...]


@dataclass
class Document:
    """Plain Python data plus the 1-based (line, col) of every value and key by path."""

    path: str
    data: Any = None
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def mark(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        table = self.key_marks if key else self.marks
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.marks:
                return self.marks[p]
            p = p[:-1]
        return self.marks.get((), (1, 1))

    def problem(self, path: Path, code: str, message: str, *, key: bool = False) -> Problem:
        line, col = self.mark(path, key=key)
        return Problem(self.path, line, col, code, message)


class YamlProblem(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def decode(raw: bytes, path: str) -> str:
    if len(raw) > MAX_BYTES:
        raise YamlProblem(Problem(path, 1, 1, "yaml-too-large",
                                  f"file is {len(raw)} bytes; the limit is {MAX_BYTES}"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", "replace")
        line, col = _line_col(prefix, len(prefix))
        raise YamlProblem(Problem(path, line, col, "yaml-not-utf8",
                                  f"byte 0x{raw[exc.start]:02x} is not valid UTF-8")) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    for lineno, line_text in enumerate(text.splitlines(), 1):
        indent = len(line_text) - len(line_text.lstrip(" \t"))
        if "\t" in line_text[:indent]:
            col = line_text.index("\t") + 1
            raise YamlProblem(Problem(path, lineno, col, "yaml-tab",
                                      "tab used for indentation; use spaces"))
    return text


def load_text(text: str, path: str) -> Document:
    """Parse YAML text into a Document, or raise YamlProblem with a located message."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = (exc.problem or exc.context or "syntax error").strip()
        ctx_mark = exc.context_mark
        if exc.problem and exc.context and ctx_mark is not None and ctx_mark.line + 1 != line:
            reason += f" ({exc.context.strip()} that starts at line {ctx_mark.line + 1})"
        raise YamlProblem(Problem(path, line, col, "yaml-syntax", reason)) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem(path, 1, 1, "yaml-syntax", str(exc).splitlines()[0])) from None
    doc = Document(path)
    if node is None:
        return doc
    budget = [MAX_NODES]
    doc.data = _convert(node, (), doc, budget, set())
    return doc


def load_file(path: str) -> Document:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlProblem(Problem(path, 1, 1, "file-unreadable", exc.strerror or str(exc))) from None
    return load_text(decode(raw, path), path)


def _where(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _fail(doc: Document, node: yaml.Node, code: str, message: str) -> YamlProblem:
    line, col = _where(node)
    return YamlProblem(Problem(doc.path, line, col, code, message))


_BOOL = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, value = node.tag, node.value
    if tag.endswith(":str"):
        return value
    if tag.endswith(":null"):
        return None
    if tag.endswith(":bool"):
        return _BOOL.get(value.lower(), bool(value))
    if tag.endswith(":int"):
        try:
            return int(value.replace("_", ""), 0)
        except ValueError:
            return value
    if tag.endswith(":float"):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value  # timestamps and the rest stay text: flows compare dates as strings


def _convert(node: yaml.Node, path: Path, doc: Document, budget: list[int], active: set[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _fail(doc, node, "yaml-too-complex",
                    f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)")
    doc.marks.setdefault(path, _where(node))
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if len(path) >= MAX_DEPTH:
        raise _fail(doc, node, "yaml-too-deep", f"nested more than {MAX_DEPTH} levels deep")
    if id(node) in active:
        raise _fail(doc, node, "yaml-recursive", "an alias refers to itself")
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            return [_convert(item, path + (i,), doc, budget, active) for i, item in enumerate(node.value)]
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _fail(doc, key_node, "yaml-merge-key", "merge keys (<<) are not supported")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _fail(doc, key_node, "yaml-bad-key", "keys must be plain text")
            key = _scalar(key_node)
            if isinstance(key, (bool, float)) or key is None:
                key = key_node.value
            if key in result:
                first = doc.key_marks.get(path + (key,), (0, 0))
                raise _fail(doc, key_node, "yaml-duplicate-key",
                            f"duplicate key {key!r} (first at line {first[0]})")
            doc.key_marks[path + (key,)] = _where(key_node)
            result[key] = _convert(value_node, path + (key,), doc, budget, active)
        return result
    finally:
        active.discard(id(node))
