"""What makes a WeRSS message template render to the same text here as in WeRSS.

WeRSS renders templates with its own small engine (``core/lax/template_parser.py``), not
Jinja. Three of its habits change the text, and are reproduced on top of Jinja:

- the iterations of a ``{% for %}`` are joined with a newline;
- the body of an ``{% if %}`` (and of its ``{% else %}``) is cleaned like a whole message;
- the message is cleaned: blank lines after a ``-`` list line are dropped, runs of blank
  lines become one, and leading and trailing whitespace goes.

``rewrite_like_werss`` adds Jinja tags that do the first two; ``clean_like_werss`` is the
clean-up. WeRSS's ``{{= expr }}`` runs Python and is refused (``find_python_expression``).
Content formats (``html``, ``text``, ``markdown``) convert article bodies as WeRSS's
``webhook.content_format`` does.
"""

from __future__ import annotations

import re

CLEAN_FILTER = "_werss_clean"
CONTENT_FORMATS = ("html", "text", "markdown")

_TAG = re.compile(
    r"\{%(?P<lstrip>[-+]?)\s*(?P<name>\w+)(?P<rest>.*?)(?P<rstrip>[-+]?)%\}"
    r"|\{#.*?#\}", re.S)
_RAW_END = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}", re.S)
_BLOCK_TAGS = {"if", "for", "macro", "call", "filter", "with", "block", "autoescape", "trans"}
_PYTHON_EXPRESSION = re.compile(r"\{\{[-+]?\s*=")


def find_python_expression(source: str) -> int | None:
    """Return the line of the first ``{{= expr }}`` (WeRSS's Python eval), or None."""
    match = _PYTHON_EXPRESSION.search(source)
    return source.count("\n", 0, match.start()) + 1 if match else None


def rewrite_like_werss(source: str, json_document: bool = False) -> str:
    """Add the Jinja tags that join loop iterations and clean if bodies as WeRSS does.

    In a JSON document a loop inside a string value is joined with an escaped newline, so
    the message stays valid JSON (WeRSS would send a raw newline there, which is not).
    """
    out: list[str] = []
    stack: list[str] = []
    position = 0
    in_string = False
    while True:
        match = _TAG.search(source, position)
        if match is None:
            out.append(source[position:])
            return "".join(out)
        literal = source[position:match.start()]
        out.append(literal)
        if json_document:
            in_string = _ends_inside_string(literal, in_string)
        tag = match.group(0)
        name = match.group("name")
        position = match.end()
        if name is None:  # a comment
            out.append(tag)
            continue
        left, right = match.group("lstrip"), match.group("rstrip")
        before = after = ""
        if name == "raw":
            end = _RAW_END.search(source, position)
            stop = end.end() if end else len(source)
            out.append(tag + source[position:stop])
            position = stop
            continue
        if name in _BLOCK_TAGS or (name == "set" and "=" not in match.group("rest")):
            stack.append(name)
            if name == "if":
                after = _open_clean(right)
        elif name in ("else", "elif") and stack:
            if stack[-1] == "if":
                before, after = _close_clean(left), _open_clean(right)
            elif stack[-1] == "for" and name == "else":
                before = _separator(left, in_string)
        elif name.startswith("end") and stack and stack[-1] == name[3:]:
            stack.pop()
            if name == "endif":
                before = _close_clean(left)
            elif name == "endfor":
                before = _separator(left, in_string)
        out.append(before + tag + after)


def _open_clean(strip: str) -> str:
    return f"{{% filter {CLEAN_FILTER} {strip}%}}"


def _close_clean(strip: str) -> str:
    return f"{{%{strip} endfilter %}}"


def _separator(strip: str, in_string: bool = False) -> str:
    newline = "\\n" if in_string else "\n"
    return f"{{%{strip} if not loop.last %}}{newline}{{% endif %}}"


_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)


def _ends_inside_string(literal: str, in_string: bool) -> bool:
    """Follow JSON string quotes through template text (printed values do not count)."""
    escaped = False
    for char in _EXPRESSION.sub("", literal):
        if escaped:
            escaped = False
        elif in_string and char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
    return in_string


def clean_like_werss(text: str) -> str:
    """Drop blank lines after list items and repeated blank lines, then strip the ends."""
    cleaned: list[str] = []
    previous_empty = False
    for line in text.split("\n"):
        empty = not line.strip()
        if empty and cleaned and cleaned[-1].strip().startswith("-"):
            continue
        if empty and previous_empty:
            continue
        cleaned.append(line)
        previous_empty = empty
    return "\n".join(cleaned).strip()


def format_content(html: str, content_format: str) -> str:
    """Convert an article body to WeRSS's content format (html is left as it is)."""
    if content_format == "text":
        from bs4 import BeautifulSoup

        text = BeautifulSoup(html, "html.parser").get_text().strip()
        return re.sub(r"\n\s*\n", "\n\n", text)
    if content_format == "markdown":
        from markdownify import markdownify

        markdown = markdownify(html, heading_style="ATX", bullets="-*+",
                               code_language="python")
        return re.sub(r"\n\s*\n", "\n\n", markdown)
    return html
