"""Reduce reStructuredText (Sphinx flavour) to plain prose for language-model text.

What goes: directive lines (``.. function:: f(x)``) and their option lines
(``:synopsis: ...``), comments, targets (``.. _label:``, ``__ url``), substitution
definitions, section adornment lines (``=====``, ``-----``, ``~~~~`` ...) and table
borders, plus the bodies of directives that hold no prose (``toctree``, ``index``,
``testsetup`` ...). What stays: paragraphs, titles, directive bodies (notes, function
descriptions) and code examples (literal blocks after ``::``, ``code-block`` bodies,
``>>>`` doctest blocks), code dedented and otherwise verbatim.

Inline markup outside code: ``:func:`foo``` -> ``foo``, ``:ref:`text <label>``` ->
``text``, ``:meth:`~a.B.c``` -> ``c``, ``:pep:`8``` -> ``PEP 8``, ````code```` ->
``code``, ``**bold**`` / ``*emph*`` -> the text, ```text <url>`_`` -> ``text``,
footnote references dropped, backslash escapes resolved. Runs of blank lines collapse
to one.
"""

from __future__ import annotations

import re
import textwrap

__all__ = ["rest_to_text", "reduce_inline"]

#: Directives whose body is not prose: dropped with the directive line.
SKIP_BODY_DIRECTIVES = frozenset(
    {
        "toctree", "index", "raw", "include", "literalinclude", "highlight",
        "testsetup", "testcleanup", "tabularcolumns", "image",
    }
)
#: Directives whose body is code: kept verbatim (dedented), no inline reduction.
LITERAL_DIRECTIVES = frozenset(
    {
        "code-block", "sourcecode", "code", "testcode", "testoutput", "doctest",
        "productionlist", "parsed-literal",
    }
)

_DIRECTIVE = re.compile(r"^\s*\.\.\s+([A-Za-z][\w:+.-]*)::(?:\s|$)")
_SUBSTITUTION_DEF = re.compile(r"^\s*\.\.\s+\|[^|]+\|\s+[\w:+.-]+::")
_TARGET = re.compile(r"^\s*\.\.\s+_")
_FOOTNOTE = re.compile(r"^\s*\.\.\s+\[([^\]]+)\]\s*(.*)$")
_COMMENT = re.compile(r"^\s*\.\.(?:\s|$)")
_ANONYMOUS_TARGET = re.compile(r"^\s*__\s")
_OPTION = re.compile(r"^\s*:[\w -]+:(?:\s|$)")
_ADORNMENT = re.compile(r"^\s*([!-/:-@\[-`{-~])\1{2,}\s*$")
_TABLE_BORDER = re.compile(r"^\s*(?:\+[-=+:]+\+|=+(?:\s+=+)+|-+(?:\s+-+)+)\s*$")
_GRID_ROW = re.compile(r"^\s*\|.*\|\s*$")
_DIRECTIVE_MARK = re.compile(r"\.\.\s+[A-Za-z][\w:+.-]*::")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)]|#\.|\(?[A-Za-z0-9]\))\s+(?=\S)")
_METADATA = re.compile(r"^:(?:orphan|tocdepth|nocomments|nosearch)\b")

_INLINE = re.compile(
    r"""
      (?P<literal>``(?=\S)(?P<lit>.+?)(?<=\S)``(?!\w))
    | (?P<role>(?<![\w`]):(?P<rolename>(?:[A-Za-z][\w+.-]*:)?[A-Za-z][\w+.-]*):`(?P<rolebody>[^`]+)`)
    | (?P<ref>(?<![\w`])`(?P<refbody>[^`]+)`(?:__?|:[A-Za-z][\w+.-]*:)?(?![\w`]))
    | (?P<strong>(?<![\w*\\])\*\*(?=\S)(?P<strongbody>.+?)(?<=[^\s\\])\*\*(?![\w*]))
    | (?P<emph>(?<![\w*\\])\*(?=[^\s*])(?P<emphbody>.+?)(?<=[^\s\\*])\*(?![\w*]))
    | (?P<subst>(?<![\w|])\|(?=\S)(?P<substbody>[^|\n]+?)(?<=\S)\|(?:__?)?(?![\w|]))
    | (?P<fnref>[ \t]?\[(?:\#[\w-]*|\*|\d+)\]_)
    """,
    re.VERBOSE | re.DOTALL,
)
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.*?\S)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
#: Roles rendered as a prefix plus a number: :pep:`8` -> "PEP 8", :issue:`1` -> "bpo-1".
_NUMBERED_ROLES = {"pep": "PEP ", "rfc": "RFC ", "issue": "bpo-", "gh": "gh-"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _content_indent(line: str) -> int:
    """Indentation of a line's text, after a list marker ("* ", "1. ", "#. ") if any."""
    marker = _LIST_MARKER.match(line)
    return len(marker.group(0)) if marker else _indent(line)


def _strip_title(body: str) -> str:
    """``text <target>`` -> ``text``; a bare target is returned as is."""
    match = _EXPLICIT_TITLE.match(body.strip())
    return match.group("title") if match else body.strip()


def _role_text(name: str, body: str) -> str:
    text = _strip_title(body)
    if name in _NUMBERED_ROLES and re.fullmatch(r"\d+(#.*)?", text):
        return _NUMBERED_ROLES[name] + text.split("#")[0]
    text = text.lstrip("!")
    if text.startswith("~"):  # "~a.b.c()" shows as "c()"
        head, paren, call = text[1:].partition("(")
        text = head.rsplit(".", 1)[-1] + paren + call
    return text


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: "" if m.group(1).isspace() else m.group(1), text)


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "literal":
        return match.group("lit")
    if kind == "role":
        return _role_text(match.group("rolename"), match.group("rolebody"))
    if kind == "ref":
        return _strip_title(match.group("refbody"))
    if kind == "strong":
        return _unescape(match.group("strongbody"))
    if kind == "emph":
        return _unescape(match.group("emphbody"))
    if kind == "subst":
        return match.group("substbody")
    return ""  # footnote reference


def reduce_inline(text: str) -> str:
    """Replace reST inline markup in a prose paragraph by its text (see module doc)."""
    out: list[str] = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(_unescape(text[pos : match.start()]))
        out.append(_replace(match))
        pos = match.end()
    out.append(_unescape(text[pos:]))
    return "".join(out)


class _Reducer:
    """Line-by-line state machine behind :func:`rest_to_text`."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.paragraph: list[str] = []
        self.literal: list[str] = []
        self.mode: str | None = None  # None, "skip" or "literal"
        self.base = 0  # indentation owning the current skip / literal block
        self.options_after: int | None = None  # directive indent while options may follow

    def flush_paragraph(self) -> None:
        if not self.paragraph:
            return
        lines, self.paragraph = self.paragraph, []
        if lines[0].lstrip().startswith(">>>"):  # doctest block: code, verbatim
            self.blocks.append(textwrap.dedent("\n".join(lines)).strip("\n"))
            return
        text = reduce_inline("\n".join(line.strip() for line in lines)).strip()
        if text:
            self.blocks.append(text)

    def flush_literal(self) -> None:
        code = textwrap.dedent("\n".join(line.rstrip() for line in self.literal)).strip("\n")
        self.literal = []
        if code.strip():
            self.blocks.append(code)

    def start_block(self, mode: str, base: int) -> None:
        self.flush_paragraph()
        self.mode, self.base = mode, base

    def feed(self, line: str) -> None:
        blank = not line.strip()
        if self.options_after is not None:
            if not blank and _indent(line) > self.options_after and _OPTION.match(line):
                return  # ":synopsis: ..." and friends
            self.options_after = None
        if self.mode is not None:
            if blank or _indent(line) > self.base:
                if self.mode == "literal":
                    self.literal.append(line)
                return
            if self.mode == "literal":
                self.flush_literal()
            self.mode = None
        if blank:
            self.flush_paragraph()
            return
        self.feed_markup(line)

    def feed_markup(self, line: str) -> None:
        indent = _indent(line)
        directive = _DIRECTIVE.match(line)
        if directive:
            name = directive.group(1).split(":")[-1].lower()
            self.flush_paragraph()
            self.options_after = indent
            if name in SKIP_BODY_DIRECTIVES:
                self.start_block("skip", indent)
            elif name in LITERAL_DIRECTIVES:
                self.start_block("literal", _content_indent(line))
            return
        if _SUBSTITUTION_DEF.match(line) or _TARGET.match(line) or _ANONYMOUS_TARGET.match(line):
            self.start_block("skip", indent)
            return
        footnote = _FOOTNOTE.match(line)
        if footnote:
            self.flush_paragraph()
            line = " " * indent + footnote.group(2)
            if not footnote.group(2).strip():
                return
        elif _COMMENT.match(line):
            self.start_block("skip", indent)
            return
        if _ADORNMENT.match(line) or _TABLE_BORDER.match(line):
            self.flush_paragraph()
            return
        if _METADATA.match(line):
            return
        if _GRID_ROW.match(line):
            cells = (_DIRECTIVE_MARK.sub("", c).strip() for c in line.strip().strip("|").split("|"))
            line = " " * indent + "  ".join(cell for cell in cells if cell)
        self.feed_prose(line, indent)

    def feed_prose(self, line: str, indent: int) -> None:
        stripped = line.rstrip()
        if not stripped.endswith("::"):
            self.paragraph.append(line)
            return
        # "text::" -> "text:" followed by a literal block (lines indented deeper than
        # this one); a lone "::" disappears.
        if stripped.strip() != "::":
            text = stripped[:-2].rstrip() if stripped[:-2].endswith(" ") else stripped[:-1]
            self.paragraph.append(text)
        self.start_block("literal", _content_indent(line))

    def finish(self) -> str:
        if self.mode == "literal":
            self.flush_literal()
        self.flush_paragraph()
        text = "\n\n".join(self.blocks)
        return re.sub(r"\n(?:[ \t]*\n)+", "\n\n", text).strip()


def rest_to_text(source: str) -> str:
    """Return the prose and code of a reST document with the markup removed."""
    reducer = _Reducer()
    for line in source.expandtabs(8).splitlines():
        reducer.feed(line)
    return reducer.finish()
