"""WeRSS message templates render to the same text as in WeRSS (issue 12).

The two default templates below are WeRSS's own (jobs/webhook.py in rachelos/we-mp-rss:
send_message's for message_type 0, call_webhook's for 1). The expected texts were traced
through WeRSS's engine (core/lax/template_parser.py) by hand: loop iterations joined with
a newline, each {% if %} body cleaned and stripped, then the whole message cleaned.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest

from child.templates import MAX_OUTPUT, TemplateError, check_template, render

BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2024, 5, 1, 12, 30, 0, tzinfo=BEIJING)
FEED = {"id": "feed-1", "mp_name": "技术周刊", "mp_cover": "", "mp_intro": ""}
TASK = {"id": "task-1", "name": "每日推送", "message_type": 0}
ARTICLES = [
    {"id": "a1", "mp_id": "feed-1", "title": '他说："你好"', "url": "https://example.org/1",
     "pic_url": "", "description": "<p>一</p>", "publish_time": 1714521600},
    {"id": "a2", "mp_id": "feed-1", "title": "第二篇", "url": "https://example.org/2",
     "pic_url": "https://img.example.org/2.jpg", "description": "短", "publish_time": 1714608000},
]

# WeRSS send_message's default; its "\n" escapes are real newlines in WeRSS's Python source.
WERSS_MESSAGE_DEFAULT = """
### {{feed.mp_name}} 订阅消息：
{% if articles %}
{% for article in articles %}
- [**{{ article.title }}**]({{article.url}}) ({{ article.publish_time }})\n
{% endfor %}
{% else %}
- 暂无文章\n
{% endif %}
    """

WERSS_WEBHOOK_DEFAULT = """{
  "feed": {
    "id": "{{ feed.id }}",
    "name": "{{ feed.mp_name }}"
  },
  "articles": [
    {% if articles %}
     {% for article in articles %}
        {
          "id": "{{ article.id }}",
          "mp_id": "{{ article.mp_id }}",
          "title": "{{ article.title }}",
          "pic_url": "{{ article.pic_url }}",
          "url": "{{ article.url }}",
          "description": "{{ article.description }}",
          "publish_time": "{{ article.publish_time }}"
        }{% if not loop.last %},{% endif %}
      {% endfor %}
    {% endif %}
  ],
  "task": {
    "id": "{{ task.id }}",
    "name": "{{ task.name }}"
  },
  "now": "{{ now }}"
}
"""

# What WeRSS sends for them. Note the stripped indentation of the first article and the
# whitespace-only line between articles: WeRSS's clean-up keeps one such line.
WERSS_WEBHOOK_TEXT = """{
  "feed": {
    "id": "feed-1",
    "name": "技术周刊"
  },
  "articles": [
    {
          "id": "a1",
          "mp_id": "feed-1",
          "title": "他说：\\"你好\\"",
          "pic_url": "",
          "url": "https://example.org/1",
          "description": "<p>一</p>",
          "publish_time": "2024-05-01 08:00:00"
        },
\x20\x20\x20\x20\x20\x20
        {
          "id": "a2",
          "mp_id": "feed-1",
          "title": "第二篇",
          "pic_url": "https://img.example.org/2.jpg",
          "url": "https://example.org/2",
          "description": "短",
          "publish_time": "2024-05-02 08:00:00"
        }
  ],
  "task": {
    "id": "task-1",
    "name": "每日推送"
  },
  "now": "2024-05-01 12:30:00"
}"""


def rendered(template: str, articles=ARTICLES, **kwargs) -> str:
    return render(template, feed=FEED, articles=articles, task=TASK, now=NOW, **kwargs)


def test_werss_default_message_template_renders_as_in_werss():
    assert rendered(WERSS_MESSAGE_DEFAULT) == (
        "### 技术周刊 订阅消息：\n"
        '- [**他说："你好"**](https://example.org/1) (2024-05-01 08:00:00)\n'
        "- [**第二篇**](https://example.org/2) (2024-05-02 08:00:00)")


def test_werss_default_message_template_without_articles_takes_the_else_branch():
    assert rendered(WERSS_MESSAGE_DEFAULT, articles=[]) == "### 技术周刊 订阅消息：\n- 暂无文章"


def test_werss_default_webhook_template_renders_as_in_werss_and_is_json():
    text = rendered(WERSS_WEBHOOK_DEFAULT)

    assert text == WERSS_WEBHOOK_TEXT
    assert json.loads(text)["articles"][0]["title"] == '他说："你好"'


@pytest.mark.parametrize("template, expected", [
    # Iterations joined with a newline; loop variables as in WeRSS.
    ("{% for a in articles %}{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} "
     "{{ loop.first }} {{ loop.last }}{% endfor %}",
     "1/2 0 True False\n2/2 1 False True"),
    ("{% for a in articles %}{{ a.title }}{% if not loop.last %},{% endif %}{% endfor %}",
     '他说："你好",\n第二篇'),
    # Missing variables and attributes print as nothing, however deep.
    ("[{{ nothing }}][{{ feed.nothing }}][{{ feed.nothing.deeper }}]", "[][][]"),
    # If bodies are stripped and cleaned; else works.
    ("A{% if feed.mp_name %}  有名字  {% else %}无{% endif %}B", "A有名字B"),
    ("A{% if feed.nothing %}有{% else %}\n\n  无名字\n\n{% endif %}B", "A无名字B"),
    # Blank lines: one after another collapse, after a "-" list line they go.
    ("- 一\n\n\n- 二\n\n\n\n三\n\n\n四", "- 一\n- 二\n三\n\n四"),
    ("\n\n  标题  \n\n", "标题"),
    # Times print as WeRSS's %Y-%m-%d %H:%M:%S.
    ("{{ now }} {{ articles[0].publish_time }}", "2024-05-01 12:30:00 2024-05-01 08:00:00"),
    ("{{ task.name }} {{ task.id }}", "每日推送 task-1"),
])
def test_werss_template_semantics(template, expected):
    assert rendered(template) == expected


CONTENT = '<h2>标题</h2><p>第一段 <b>粗</b></p><ul><li>一</li><li>二</li></ul>'


@pytest.mark.parametrize("content_format, expected", [
    ("html", CONTENT),
    ("text", "标题第一段 粗一二"),
    ("markdown", "## 标题\n\n第一段 **粗**\n\n- 一\n- 二"),
])
def test_content_formats_convert_article_bodies_as_werss(content_format, expected):
    articles = [{**ARTICLES[0], "content": CONTENT}]

    assert rendered("{% for a in articles %}{{ a.content }}{% endfor %}", articles=articles,
                    content_format=content_format) == expected


def test_an_unknown_content_format_is_refused():
    with pytest.raises(TemplateError, match="unknown content format"):
        rendered("{{ now }}", content_format="pdf")


@pytest.mark.parametrize("template", [
    "{{= len(articles) }}", "x\n{{=feed.mp_name}}", "{{- = 1 }}",
])
def test_werss_python_expressions_are_refused_with_a_clear_message(template):
    with pytest.raises(TemplateError, match="runs Python and is not supported") as caught:
        check_template(template)
    with pytest.raises(TemplateError, match="runs Python"):
        rendered(template)

    assert "line " in str(caught.value) and "\n" not in str(caught.value)


def test_check_template_refuses_syntax_errors_and_accepts_werss_defaults():
    check_template(WERSS_MESSAGE_DEFAULT)
    check_template(WERSS_WEBHOOK_DEFAULT)
    with pytest.raises(TemplateError, match="syntax error on line 2"):
        check_template("ok\n{% for a in articles %}")


# --- issue 8 item 13: bound the size of what a template builds, not only the time -------

DOUBLING = [
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s | replace('a', ns.s) %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s.replace('a', ns.s) %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
    "{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
    "{% set ns.s = ''.join([ns.s, ns.s]) %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
    "{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
    "{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}{{ ns.s | length }}",
    "{% set s = 'x' * 1000000 %}{{ ([s] * 2000) | join | length }}",
    "{% set s = 'x' * 1000000 %}{% set big %}{% for i in range(2000) %}{{ s }}{% endfor %}"
    "{% endset %}{{ big | length }}",
    "{% set s = 'x' * 1000000 %}{% filter length %}{% for i in range(2000) %}{{ s }}"
    "{% endfor %}{% endfilter %}",
    "{% set s = 'x' * 1000000 %}{% set ns = namespace(l=[]) %}{% for i in range(2000) %}"
    "{% set ns.l = ns.l + [s ~ i] %}{% endfor %}{{ ns.l | length }}",
]


@pytest.mark.parametrize("template", DOUBLING)
def test_string_building_templates_are_refused_before_using_much_memory(template):
    """A string-doubling template ran 4.5 s and took 1.5 GB despite the 2 s bound."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError, match="refused to keep rendering bounded"):
            rendered(template)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 64 * MAX_OUTPUT, f"peak {peak} bytes"
    assert time.monotonic() - started < 2


def test_ordinary_string_building_still_works():
    assert rendered("{% set ns = namespace(s='') %}{% for a in articles %}"
                    "{% set ns.s = ns.s ~ a.id ~ ';' %}{% endfor %}{{ ns.s }}") == "a1;a2;"
    assert rendered("{{ articles | map(attribute='id') | join(', ') }}") == "a1, a2"
    assert rendered("{{ '%s-%s' % (feed.id, task.id) }}") == "feed-1-task-1"
