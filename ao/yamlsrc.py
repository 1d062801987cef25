"""Safe YAML loading that remembers where every value came from.

PyYAML's composer gives us a node tree with marks; we build plain Python data from it ourselves so that
each value's ``(line, col)`` is kept in a side table keyed by its path. Building it ourselves also lets us
refuse what a config file has no business containing: duplicate keys, alias bombs, non-string keys,
custom tags, and files too large to be a config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ao.errors import AoError, Problem

MAX_BYTES = 1024 * 1024  # a config or rule file over 1 MiB is a mistake, not a config
MAX_NODES = 100_000  # constructed values, counting every alias expansion
MAX_DEPTH = 50  # nesting of mappings and lists: a config is a few levels deep, a rule condition a dozen

Path_ = tuple  # a data path: ("projects", "app", "reactions", "ci-failed", "retries")


@dataclass
class Source:
    """Loaded YAML data plus the position of every value (and of every mapping key) in the file."""

    file: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    plain: set[Path_] = field(default_factory=set)  # scalars written without quotes
    blocks: dict[Path_, tuple[int, int]] = field(default_factory=dict)  # | and > scalars: first content line

    def where(self, path: Path_, key: bool = False) -> tuple[int, int]:
        """Position of the value at ``path`` (or of its key), falling back to the nearest ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def line_in(self, path: Path_, offset: int) -> tuple[int, int]:
        """Position of line ``offset`` (0-based) of the string at ``path``.

        Exact for a ``|`` block, whose text starts on the line after the indicator; a ``>`` block folds
        lines, so there it may be an earlier line of the block. Any other scalar: the value's own position.
        """
        if tuple(path) in self.blocks:
            line, col = self.blocks[tuple(path)]
            return line + offset, col
        return self.where(path)

    def sub(self, path: Path_) -> "Source":
        """The part of this document under ``path``, as a document of its own (same file, same lines)."""
        n = len(path)

        def cut(table: dict) -> dict:
            return {p[n:]: pos for p, pos in table.items() if p[:n] == tuple(path)}

        data = self.data
        for part in path:
            data = data[part]
        return Source(self.file, data, cut(self.values), cut(self.keys), {p[n:] for p in self.plain if p[:n] == tuple(path)},
                      cut(self.blocks))

    def problem(self, path: Path_, message: str, key: bool = False) -> Problem:
        from ao.errors import dotted

        line, col = self.where(path, key)
        return Problem(self.file, line, col, message, dotted(path))


def _position_of_byte(raw: bytes, index: int) -> tuple[int, int]:
    before = raw[:index]
    line = before.count(b"\n") + 1
    col = index - (before.rfind(b"\n") + 1) + 1
    return line, col


def read_bytes(path: Path, label: str, limit: int = MAX_BYTES) -> bytes:
    """A regular file's bytes, at most ``limit`` of them. A device (``/dev/zero``), a FIFO or a folder is
    refused before anything is read (opened non-blocking, so a FIFO with no writer cannot hang us)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except ValueError:  # a NUL byte in the path
        raise AoError(f"{label}: not a usable file name (it contains a NUL byte)") from None
    except OSError as exc:
        raise AoError(f"{label}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a regular file"
            raise AoError(f"{label}: cannot read: {kind}, not a regular file")
        if info.st_size > limit:
            raise AoError(problems=[Problem(label, 1, 1, f"file is {info.st_size / 1048576:.1f} MiB; refusing to load "
                                                         f"more than {limit // 1048576} MiB")])
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while we read it
            raise AoError(problems=[Problem(label, 1, 1, f"file is over {limit // 1048576} MiB; refusing to load it")])
        return b"".join(chunks)
    except OSError as exc:
        raise AoError(f"{label}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(path: Path, label: str | None = None) -> str:
    """Read a UTF-8 text file with the size limit, reporting failures as problems."""
    label = label or str(path)
    raw = read_bytes(path, label)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position_of_byte(raw, exc.start)
        raise AoError(problems=[Problem(label, line, col, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})")]) from None


def load_file(path: Path, label: str | None = None) -> Source:
    label = label or str(path)
    return loads(read_text(path, label), label)


def loads(text: str, file: str = "<string>") -> Source:
    """Parse one YAML document. Raises :class:`AoError` with positioned problems."""
    import yaml

    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise AoError(problems=[Problem(file, 1, 1, f"document is larger than {MAX_BYTES // 1048576} MiB; refusing to load it")])
    deep = _flow_too_deep(text)
    if deep is not None:
        line, col = deep
        raise AoError(problems=[Problem(file, line, col, f"nested more than {MAX_DEPTH} levels deep; refusing to "
                                                         "load it")])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem or exc.context or "invalid YAML"
        if "'\\t'" in message or "\t" in message:
            message = "tab characters are not allowed for indentation; use spaces"
        raise AoError(problems=[Problem(file, line, col, f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise AoError(problems=[Problem(file, 1, 1, f"invalid YAML: {exc}")]) from None
    except RecursionError:  # PyYAML composes recursively: far deeper than MAX_DEPTH
        raise AoError(problems=[Problem(file, 1, 1, f"nested more than {MAX_DEPTH} levels deep; refusing to "
                                                    "load it")]) from None
    src = Source(file=file, data=None)
    if node is None:
        src.values[()] = (1, 1)
        return src
    builder = _Builder(src, text.splitlines())
    src.data = builder.build(node, ())
    if builder.problems:
        raise AoError(problems=builder.problems)
    return src


def _flow_too_deep(text: str) -> tuple[int, int] | None:
    """Where flow collections (``[`` and ``{``) first nest deeper than MAX_DEPTH, if they do. Checked before
    parsing because PyYAML's time grows with the square of that depth (a megabyte of ``[`` would take hours).
    Brackets inside quoted strings count too: a config never has fifty of them open at once."""
    import re

    depth = 0
    for m in re.finditer(r"[\[{\]}]", text):
        if m.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                before = text[:m.start()]
                return before.count("\n") + 1, m.start() - (before.rfind("\n") + 1) + 1
        elif depth:
            depth -= 1
    return None


class _Builder:
    def __init__(self, src: Source, lines: list[str]) -> None:
        self.src = src
        self.lines = lines
        self.count = 0
        self.problems: list[Problem] = []
        self.open: set[int] = set()  # ids of the collection nodes being built: an alias to one is a cycle
        import yaml

        self.constructor = yaml.constructor.SafeConstructor()

    def _pos(self, node: Any) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _fail(self, node: Any, message: str, path: Path_) -> None:
        from ao.errors import dotted

        line, col = self._pos(node)
        self.problems.append(Problem(self.src.file, line, col, message, dotted(path)))

    def build(self, node: Any, path: Path_) -> Any:
        import yaml

        self.count += 1
        if self.count > MAX_NODES:
            line, col = self._pos(node)
            raise AoError(problems=[Problem(self.src.file, line, col,
                                            f"document expands to more than {MAX_NODES} values "
                                            "(an alias bomb?); refusing to load it")])
        self.src.values.setdefault(path, self._pos(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            line, col = self._pos(node)
            if id(node) in self.open:
                raise AoError(problems=[Problem(self.src.file, line, col, "an alias refers to a value that "
                                                "contains it (a cycle); refusing to load it")])
            if len(path) >= MAX_DEPTH:
                raise AoError(problems=[Problem(self.src.file, line, col, f"nested more than {MAX_DEPTH} levels "
                                                "deep; refusing to load it")])
            self.open.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self.open.discard(id(node))
        return self._scalar(node, path)

    def _collection(self, node: Any, path: Path_) -> Any:
        import yaml

        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._fail(key_node, "merge keys (<<) are not supported", path)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self._fail(key_node, "mapping keys must be plain strings", path)
                    continue
                key = key_node.value
                child = path + (key,)
                if key in out:
                    self._fail(key_node, f"duplicate key '{key}'", child)
                    continue
                self.src.keys[child] = self._pos(key_node)
                out[key] = self.build(value_node, child)
            return out
        return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]

    def _scalar(self, node: Any, path: Path_) -> Any:
        import yaml

        if not node.tag.startswith("tag:yaml.org,2002:"):
            self._fail(node, f"custom tag {node.tag} is not allowed", path)
            return None
        if node.style is None:
            self.src.plain.add(path)
        elif node.style in ("|", ">"):
            first = node.start_mark.line + 1  # 0-based: the text starts on the line after the indicator
            body = [ln for ln in self.lines[first:node.end_mark.line + 1] if ln.strip()]
            indent = len(body[0]) - len(body[0].lstrip(" ")) if body else node.start_mark.column
            self.src.blocks[path] = (first + 1, indent + 1)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._fail(node, f"invalid value: {getattr(exc, 'problem', exc)}", path)
            return None
