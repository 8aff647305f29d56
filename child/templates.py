"""Render a task's message template: Jinja2 in a sandbox, bounded in time and size.

The template sees ``feed``, ``articles`` (upload-shaped dicts), ``task`` (without its
headers and cookies, which carry tokens) and ``now``. As in WeRSS, ``{{ now }}`` and
``{{ article.publish_time }}`` print as ``2024-05-01 08:00:00`` in the display time zone
(``now``'s, else the child's local one), yet stay a datetime and Unix seconds for
``| datetime("%m-%d %H:%M")``, ``| int``, comparisons and ``| tojson``. ``None`` prints as
nothing. A template written as a JSON document (it starts with ``{"`` or ``[{"``) gets
every printed string JSON-escaped, so WeRSS's ``"title": "{{ article.title }}"`` stays
valid JSON when a title has quotes or a description carries HTML; ``| tojson`` and
``| safe`` output is printed as it is.

WeRSS templates render to the same text as in WeRSS (see ``werss_templates``): loop
iterations are joined with a newline, ``{% if %}`` bodies and the message are cleaned of
blank lines, a missing ``{{ a.b.c }}`` prints as nothing, and article bodies can be sent as
html, text or markdown. WeRSS's ``{{= expr }}`` (Python eval) is refused;
``check_template`` says so when a task is saved.

There is no loader, so ``include``, ``import`` and ``extends`` cannot read files. The
sandbox refuses private attributes, ranges over 100,000 items, huge repetitions, powers
and format widths; output is capped at ``MAX_OUTPUT`` bytes and the time spent at
``RENDER_SECONDS`` (checked on attribute access, calls, operators, range loops and
output). Every string or list a template builds (``+``, ``~``, ``*``, ``%``, filters,
method calls, block bodies) is capped at ``MAX_VALUE`` characters or ``MAX_ITEMS`` items
before it is built, and all of them together at ``MAX_WORK`` characters, so memory stays
bounded as well as time. Templates come from the parent's administrators: these bounds
stop mistakes, not a determined author (a loop over a long string without output is not
interrupted).
"""

from __future__ import annotations

import json
import re
import string
import time
from datetime import datetime, tzinfo
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.filters import do_center, do_indent, do_truncate
from jinja2.sandbox import SandboxedEnvironment, SecurityError, safe_range
from markupsafe import Markup

from shared.lease_schemas import TASK_SECRET_FIELDS

from .werss_templates import (
    CLEAN_FILTER, CONTENT_FORMATS, clean_like_werss, find_python_expression, format_content,
    rewrite_like_werss,
)

MAX_OUTPUT = 1024 * 1024
MAX_VALUE = MAX_OUTPUT  # characters in one string a template builds
MAX_ITEMS = 100_000  # items in one list a template builds
MAX_WORK = 16 * MAX_OUTPUT  # characters of all the strings one rendering builds
RENDER_SECONDS = 2.0
MAX_WIDTH = 10_000  # widths, repetitions and batch sizes beyond this are refused
MAX_INT_BITS = 100_000
DEFAULT_FORMAT = "%Y-%m-%d %H:%M:%S"
# A template sees the task without the fields the contract marks secret.
HIDDEN_TASK_FIELDS = TASK_SECRET_FIELDS
_JSON_DOCUMENT = re.compile(r'\s*(\{\s*["}]|\[\s*(\{\s*"|"|\]))')
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")
_AMPLIFYING_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


class TemplateError(Exception):
    """The template cannot be rendered; the message is one line, fit for a report."""


def check_template(template: str) -> None:
    """Refuse what can never render: WeRSS's ``{{= expr }}`` and Jinja syntax errors.

    :raises TemplateError: with a one-line message naming the line.
    """
    line = find_python_expression(template)
    if line is not None:
        raise TemplateError(
            f"line {line}: WeRSS's {{{{= expression }}}} runs Python and is not supported; "
            "write it as a Jinja expression, e.g. {{ articles | length }}")
    env = _BoundedEnvironment(display_tz=None, json_document=False)
    try:
        env.compile(rewrite_like_werss(template))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error on line {exc.lineno}: {_one_line(exc.message)}") \
            from None


def render(template: str, *, feed: dict, articles: list[dict], task: dict,
           now: datetime, content_format: str = "html") -> str:
    """Render ``template`` for one feed's new articles, as WeRSS would.

    :raises TemplateError: on a syntax error, a sandbox violation, a failing expression,
        or output beyond the size or time bounds.
    """
    check_template(template)
    if content_format not in CONTENT_FORMATS:
        raise TemplateError(f"unknown content format {content_format!r}; "
                            f"use one of {', '.join(CONTENT_FORMATS)}")
    env = _BoundedEnvironment(display_tz=now.tzinfo,
                              json_document=bool(_JSON_DOCUMENT.match(template)))
    if content_format != "html" and "content" in template.lower():
        articles = [_with_content_format(article, content_format) for article in articles]
    try:
        compiled = env.from_string(rewrite_like_werss(template, env.json_document))
        context = {
            "feed": feed,
            "articles": [_with_unix_time(article, now.tzinfo) for article in articles],
            "task": {k: v for k, v in task.items() if k not in HIDDEN_TASK_FIELDS},
            "now": _Now(now.year, now.month, now.day, now.hour, now.minute, now.second,
                        now.microsecond, tzinfo=now.tzinfo),
        }
        chunks, size = [], 0
        for chunk in compiled.generate(context):
            size += len(chunk.encode("utf-8"))
            if size > MAX_OUTPUT:
                raise TemplateError(f"the rendered message is larger than {MAX_OUTPUT} bytes")
            env.check_time()
            chunks.append(chunk)
        return clean_like_werss("".join(chunks))
    except TemplateError:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error on line {exc.lineno}: {_one_line(exc.message)}") \
            from None
    except MemoryError:
        raise TemplateError("the template needs too much memory") from None
    except RecursionError:
        raise TemplateError("the template recurses too deeply") from None
    except Exception as exc:  # anything an expression raises is the template's fault
        raise TemplateError(f"{type(exc).__name__}: {_one_line(exc)}") from None


class _BoundedCodeGenerator(CodeGenerator):
    """Compile ``a ~ b`` to a join that checks the size before it builds the string."""

    @optimizeconst
    def visit_Concat(self, node, frame) -> None:
        self.write("environment.bounded_join((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, *, display_tz: tzinfo | None, json_document: bool):
        self.display_tz = display_tz
        self.json_document = json_document
        self.deadline = time.monotonic() + RENDER_SECONDS
        self.work = 0
        super().__init__(autoescape=False, finalize=self._finalize, undefined=ChainableUndefined)
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) would never end
        self.globals["range"] = self._range
        self.filters.update({
            "datetime": self._datetime, "truncate": self._truncate, "tojson": _tojson,
            "format": _format, "center": _center, "indent": _indent,
            "batch": _bounded_filter(self.filters["batch"], "batch"),
            "slice": _bounded_filter(self.filters["slice"], "slice"),
            "join": self._join_filter, "replace": self._replace_filter,
            CLEAN_FILTER: clean_like_werss,
        })
        self.filters = {name: self._accounted(function)
                        for name, function in self.filters.items()}
        # Block bodies ({% filter %}, {% set %}...{% endset %}, macros) are joined by this.
        self.concat = self._bounded_concat  # type: ignore[method-assign]  # Jinja's per-environment hook

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"rendering took longer than {RENDER_SECONDS:g} s")

    # -- size bounds -------------------------------------------------------------------------
    def spend(self, value: Any) -> Any:
        """Count a built string or list against the bounds; refuse it if too big."""
        if isinstance(value, str):
            size = len(value)
            if size > MAX_VALUE:
                _refuse(f"a string of {size} characters (the limit is {MAX_VALUE})")
        elif isinstance(value, (list, tuple)):
            size = len(value)
            if size > MAX_ITEMS:
                _refuse(f"a list of {size} items (the limit is {MAX_ITEMS})")
        else:
            return value
        self.work += size
        if self.work > MAX_WORK:
            _refuse(f"more than {MAX_WORK} characters of text in all")
        return value

    def expect(self, size: int) -> None:
        """Refuse before building a string of ``size`` characters that is over the bound."""
        if size > MAX_VALUE:
            _refuse(f"a string of {size} characters (the limit is {MAX_VALUE})")
        if self.work + size > MAX_WORK:
            _refuse(f"more than {MAX_WORK} characters of text in all")

    def bounded_join(self, parts: tuple) -> str:
        texts = [str(part) for part in parts]
        self.check_time()
        self.expect(sum(len(text) for text in texts))
        return self.spend("".join(texts))

    def _bounded_concat(self, parts) -> str:
        texts = list(parts)
        self.expect(sum(len(text) for text in texts))
        return self.spend("".join(texts))

    def _accounted(self, function):
        def bounded(*args, **kwargs):
            self.check_time()
            return self.spend(function(*args, **kwargs))

        for attribute in ("jinja_pass_arg", "__name__"):
            if hasattr(function, attribute):
                setattr(bounded, attribute, getattr(function, attribute))
        return bounded

    def _join_filter(self, value: Any, d: str = "", attribute: Any = None) -> str:
        items = _bounded_list(value)
        if attribute is not None:
            items = [self.getitem(item, attribute) for item in items]
        texts = [str(item) for item in items]
        self.expect(sum(len(text) for text in texts) + len(str(d)) * max(0, len(texts) - 1))
        return str(d).join(texts)

    def _replace_filter(self, value: Any, old: str, new: str, count: int | None = None) -> str:
        text = str(value)
        _expect_replace(self, text, str(old), str(new), count)
        return text.replace(str(old), str(new), -1 if count is None else count)

    # -- sandbox hooks -----------------------------------------------------------------------
    def getattr(self, obj: Any, attribute: str) -> Any:
        self.check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.check_time()
        return super().getitem(obj, argument)

    def call(self, context, obj, /, *args, **kwargs):
        self.check_time()
        owner = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", "")
        if isinstance(owner, str) and name in _AMPLIFYING_METHODS:
            _check_sizes(args, kwargs)
        if isinstance(owner, str) and name == "join" and args:
            texts = _bounded_list(args[0])
            self.expect(sum(len(str(t)) for t in texts) + len(owner) * max(0, len(texts) - 1))
            args = (texts, *args[1:])
        elif isinstance(owner, str) and name == "replace" and len(args) >= 2:
            _expect_replace(self, owner, str(args[0]), str(args[1]),
                            args[2] if len(args) > 2 else None)
        elif isinstance(owner, str) and name in ("format", "format_map"):
            values = [*args, *kwargs.values()]
            if name == "format_map" and args and isinstance(args[0], dict):
                values = list(args[0].values())
            widest = max((len(str(v)) for v in values), default=0)
            self.expect(len(owner) + owner.count("{") * widest)
        return self.spend(super().call(context, obj, *args, **kwargs))

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja returns an Undefined that prints as nothing; say so at once instead.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")

    def wrap_str_format(self, value: Any):
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format_spec(value.__self__)
        return wrapper

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        self.check_time()
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_percent_spec(left)
            values = right.values() if isinstance(right, dict) else (
                right if isinstance(right, tuple) else (right,))
            widest = max((len(str(v)) for v in values), default=0)
            self.expect(len(left) + left.count("%") * widest)
        elif operator == "+" and isinstance(left, str) and isinstance(right, str):
            self.expect(len(left) + len(right))
        elif operator == "+" and isinstance(left, (list, tuple)) \
                and isinstance(right, (list, tuple)) and len(left) + len(right) > MAX_ITEMS:
            _refuse(f"a list of {len(left) + len(right)} items (the limit is {MAX_ITEMS})")
        return self.spend(super().call_binop(context, operator, left, right))

    def _finalize(self, value: Any) -> Any:
        if value is None:
            return ""
        if self.json_document and isinstance(value, str) and not isinstance(value, Markup):
            return json.dumps(value, ensure_ascii=False)[1:-1]
        return value

    # -- globals and filters -----------------------------------------------------------------
    def _range(self, *args: int) -> _TimedRange:
        return _TimedRange(safe_range(*args), self.check_time)

    def _datetime(self, value: Any, format: str = DEFAULT_FORMAT) -> str:
        """Format Unix seconds or a datetime in the display time zone; nothing for 0."""
        if value is None or isinstance(value, Undefined) or value == "":
            return ""
        if isinstance(value, datetime):
            moment = value.astimezone(self.display_tz) if value.tzinfo else value
        else:
            seconds = float(value)
            if seconds <= 0:
                return ""
            moment = datetime.fromtimestamp(seconds, self.display_tz)
        return moment.strftime(format)

    def _truncate(self, value: Any, length: int = 255, killwords: bool = False,
                  end: str = "...", leeway: int = 0) -> str:
        # Jinja's default leeway of 5 leaves strings a little over the length untouched.
        return do_truncate(self, value, length, killwords, end, leeway)


class _TimedRange:
    """A sandbox range whose iteration keeps to the render deadline."""

    def __init__(self, rng: range, check):
        self._range = rng
        self._check = check

    def __iter__(self):
        for item in self._range:
            self._check()
            yield item

    def __reversed__(self):
        return iter(_TimedRange(self._range[::-1], self._check))

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index):
        return self._range[index]

    def __contains__(self, item) -> bool:
        return item in self._range

    def __repr__(self) -> str:
        return repr(self._range)


class _UnixTime(int):
    """Unix seconds that print as a date (as WeRSS templates expect)."""

    _tz: tzinfo | None

    def __new__(cls, value: int, tz: tzinfo | None):
        obj = super().__new__(cls, value)
        obj._tz = tz
        return obj

    def __str__(self) -> str:
        if self <= 0:
            return ""
        return datetime.fromtimestamp(int(self), self._tz).strftime(DEFAULT_FORMAT)


class _Now(datetime):
    def __str__(self) -> str:
        return self.strftime(DEFAULT_FORMAT)


def _with_content_format(article: dict, content_format: str) -> dict:
    content = article.get("content")
    if isinstance(content, str) and content:
        return {**article, "content": format_content(content, content_format)}
    return article


def _bounded_list(value: Any) -> list:
    """Materialise an iterable for join, refusing one longer than MAX_ITEMS."""
    items = []
    for item in value:
        items.append(item)
        if len(items) > MAX_ITEMS:
            _refuse(f"joining more than {MAX_ITEMS} items")
    return items


def _expect_replace(env: _BoundedEnvironment, text: str, old: str, new: str,
                    count: Any) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    env.expect(len(text) + occurrences * max(0, len(new) - len(old)))


def _with_unix_time(article: dict, tz: tzinfo | None) -> dict:
    value = article.get("publish_time")
    if isinstance(value, int) and not isinstance(value, bool):
        return {**article, "publish_time": _UnixTime(value, tz)}
    return dict(article)


def _tojson(value: Any, indent: int | None = None) -> Markup:
    """Dump JSON with Chinese kept readable (Jinja's own escapes it to \\uXXXX)."""
    _check_sizes((indent,), {})
    return Markup(json.dumps(value, ensure_ascii=False, indent=indent, default=str))


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    text = str(value)
    _check_percent_spec(text)
    if args and kwargs:
        raise TypeError("format() takes either positional or keyword arguments, not both")
    return text % (kwargs or args)


def _center(value: Any, width: int = 80) -> str:
    _check_sizes((width,), {})
    return do_center(value, width)


def _indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_sizes((width,), {})
    return do_indent(value, width, first, blank)


def _bounded_filter(function, name: str):
    def bounded(value, count, *args, **kwargs):
        _check_sizes((count,), {})
        return function(value, count, *args, **kwargs)

    bounded.__name__ = name
    return bounded


def _refuse(what: str) -> None:
    raise TemplateError(f"the template asks for {what}; refused to keep rendering bounded")


def _check_sizes(args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and abs(value) > MAX_WIDTH:
            _refuse(f"a width or count of {value}")


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, (str, list, tuple)):
        left, right = right, left
    if isinstance(left, (str, list, tuple)) and isinstance(right, int):
        if len(left) * right > MAX_OUTPUT:
            _refuse("a repetition larger than the output limit")
    elif isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            _refuse("a number too large")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 \
            and abs(base) > 1 and base.bit_length() * exponent > MAX_INT_BITS:
        _refuse("a number too large")


def _check_percent_spec(text: str) -> None:
    for match in _PERCENT_SPEC.finditer(text):
        for part in match.groups():
            if part == "*" or (part and int(part) > MAX_WIDTH):
                _refuse("a format width too large")


def _check_format_spec(text: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(text):
        if spec and ("{" in spec or any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", spec))):
            _refuse("a format width too large")


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())[:300]
