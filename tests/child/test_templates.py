"""Message templates: WeRSS-style rendering, the filters, and the sandbox's bounds."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from child.templates import MAX_OUTPUT, RENDER_SECONDS, TemplateError, render

BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2024, 5, 1, 12, 30, 0, tzinfo=BEIJING)
FEED = {"id": "feed-1", "mp_name": "技术周刊", "mp_cover": "", "mp_intro": ""}
TASK = {"id": "task-1", "name": "每日推送", "message_type": 1, "web_hook_url": "https://hook.example",
        "headers": {"Authorization": "Bearer tok-123456"}, "cookies": "sid=cookie-987654"}
ARTICLES = [
    {"id": "a1", "mp_id": "feed-1", "title": '他说："你好" and "hi"', "url": "https://example.org/1",
     "pic_url": "", "description": '<p class="lead">第一段\n第二段</p>', "publish_time": 1714521600,
     "content": None},
    {"id": "a2", "mp_id": "feed-1", "title": "第二篇", "url": "https://example.org/2",
     "pic_url": "https://img.example.org/2.jpg", "description": "短", "publish_time": 0},
]

WERSS_MARKDOWN = """### {{feed.mp_name}} 订阅消息：
{% if articles %}
{% for article in articles %}
- [**{{ article.title }}**]({{article.url}}) ({{ article.publish_time }})
{% endfor %}
{% else %}
- 暂无文章
{% endif %}"""

WERSS_WEBHOOK_JSON = """{
  "feed": {"id": "{{ feed.id }}", "name": "{{ feed.mp_name }}"},
  "articles": [
    {% for article in articles %}
    {"id": "{{ article.id }}", "title": "{{ article.title }}",
     "description": "{{ article.description }}", "content": "{{ article.content }}",
     "publish_time": "{{ article.publish_time }}"}{% if not loop.last %},{% endif %}
    {% endfor %}
  ],
  "task": {"id": "{{ task.id }}", "name": "{{ task.name }}"},
  "now": "{{ now }}"
}"""


def rendered(template: str, articles=ARTICLES, now=NOW) -> str:
    return render(template, feed=FEED, articles=articles, task=TASK, now=now)


def test_werss_markdown_template_renders_dates_like_werss():
    text = rendered(WERSS_MARKDOWN)

    assert "### 技术周刊 订阅消息：" in text
    assert '- [**他说："你好" and "hi"**](https://example.org/1) (2024-05-01 08:00:00)' in text
    assert "- [**第二篇**](https://example.org/2) ()" in text  # no date known
    assert "暂无文章" not in text
    assert "暂无文章" in rendered(WERSS_MARKDOWN, articles=[])


def test_werss_json_template_stays_valid_json_with_quotes_and_html():
    document = json.loads(rendered(WERSS_WEBHOOK_JSON))

    first = document["articles"][0]
    assert first["title"] == '他说："你好" and "hi"'
    assert first["description"] == '<p class="lead">第一段\n第二段</p>'
    assert first["content"] == ""  # None prints as nothing
    assert first["publish_time"] == "2024-05-01 08:00:00"
    assert document["now"] == "2024-05-01 12:30:00"
    assert document["task"] == {"id": "task-1", "name": "每日推送"}


def test_text_template_is_not_json_escaped():
    assert rendered("{{ articles[0].title }}\n{{ articles[0].description }}") == \
        '他说："你好" and "hi"\n<p class="lead">第一段\n第二段</p>'


def test_tojson_keeps_chinese_readable_and_times_as_numbers():
    text = rendered('{"items": {{ articles | tojson }}}')

    assert '"title": "他说：\\"你好\\" and \\"hi\\""' in text and "\\u" not in text
    assert json.loads(text)["items"][0]["publish_time"] == 1714521600
    assert json.loads(text)["items"][0]["title"] == ARTICLES[0]["title"]


@pytest.mark.parametrize("template, expected", [
    ("{{ articles[0].publish_time | datetime('%m月%d日 %H:%M') }}", "05月01日 08:00"),
    ("{{ articles[0].publish_time | datetime }}", "2024-05-01 08:00:00"),
    ("{{ 1714521600 | datetime('%Y-%m-%d') }}", "2024-05-01"),
    ("{{ articles[1].publish_time | datetime }}", ""),
    ("{{ now | datetime('%H:%M') }}", "12:30"),
    ("{{ now.strftime('%Y年') }}", "2024年"),
    ("{{ articles[0].publish_time | int }}", "1714521600"),
    ("{{ articles[0].publish_time > 1700000000 }}", "True"),
    ("{{ '%d' | format(articles[0].publish_time) }}", "1714521600"),
    ("{{ '这是一个很长的中文标题' | truncate(8) }}", "这是一个很..."),
    ("{{ 'short' | truncate(8) }}", "short"),
    ("{{ articles[0].description | striptags }}", "第一段 第二段"),
    ("{{ articles | length }}", "2"),
    ("{{ feed.missing }}|{{ feed.missing | default('无') }}", "|无"),
    ("[{{ articles[0].nothing.deeper }}]", "[]"),  # WeRSS: a missing a.b.c prints nothing
    ("[{{ nothing.at.all }}]", "[]"),
])
def test_filters_for_message_templates(template, expected):
    assert rendered(template) == expected


def test_dates_follow_the_time_zone_of_now():
    utc_now = NOW.astimezone(timezone.utc)

    assert rendered("{{ articles[0].publish_time }} / {{ now }}", now=utc_now) == \
        "2024-05-01 00:00:00 / 2024-05-01 04:30:00"


def test_task_headers_and_cookies_are_not_visible_to_templates():
    text = rendered("{{ task }} {{ task.headers }} {{ task.cookies }}")

    assert "tok-123456" not in text and "cookie-987654" not in text
    assert "每日推送" in text


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ feed['__class__'] }}",
    "{{ now.__class__.__subclasses__() }}",
])
def test_private_attributes_are_a_security_error(template):
    with pytest.raises(TemplateError, match="SecurityError: access to attribute") as caught:
        rendered(template)

    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("template, message", [
    ("{% for a in articles %}{{ a.title }", "syntax error on line 1"),
    ("line one\n{% if %}", "syntax error on line 2"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("{% include 'secrets.txt' %}", "no loader"),
    ("{% import 'macros.html' as m %}", "no loader"),
    ("{% extends '/etc/passwd' %}", "no loader"),
    ("{% from 'x' import y %}", "no loader"),
    ("{{ lipsum(10) }}", "lipsum"),
])
def test_broken_templates_give_a_one_line_template_error(template, message):
    with pytest.raises(TemplateError, match=message) as caught:
        rendered(template)

    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("template", [
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ ['a'] * 10**9 }}",
    "{{ 10 ** 10000000 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:{}}'.format(1, 999999999) }}",
    "{{ 'a'.center(999999999) }}",
    "{{ 'a'.ljust(999999999) }}",
    "{{ 'a' | center(999999999) }}",
    "{{ 'a' | indent(999999999) }}",
    "{{ '%0999999999d' | format(1) }}",
    "{{ articles | tojson(999999999) }}",
    "{{ articles | batch(999999999, 'x') | list }}",
    "{{ articles | slice(999999999) | list }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
])
def test_runaway_templates_are_refused_quickly(template):
    started = time.monotonic()

    with pytest.raises(TemplateError):
        rendered(template)

    assert time.monotonic() - started < 1


def test_output_larger_than_the_limit_is_refused():
    with pytest.raises(TemplateError, match=f"larger than {MAX_OUTPUT} bytes"):
        rendered("{% for i in range(100000) %}{{ articles | tojson }}{% endfor %}")


def test_output_of_exactly_the_limit_is_rendered():
    # Iterations are joined with a newline, as in WeRSS: 1024 x 1023 + 1023 newlines + 1.
    text = rendered("{% for i in range(1024) %}{{ 'x' * 1023 }}{% endfor %}y")

    assert len(text.encode()) == MAX_OUTPUT


def test_endless_loops_stop_at_the_time_limit():
    started = time.monotonic()

    with pytest.raises(TemplateError, match="took longer than"):
        rendered("{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}"
                 "{% endfor %}{% endfor %}")

    assert time.monotonic() - started < RENDER_SECONDS + 1


def test_templates_cannot_print_the_webhook_token():
    from datetime import datetime, timezone

    from child.templates import render

    task = {"id": "t", "name": "n", "web_hook_url": "https://hook.example/send?key=SECRET-TOKEN-1",
            "headers": {"Authorization": "Bearer x"}, "cookies": "a=b"}
    text = render("{{ task|tojson }} {{ task.web_hook_url }}", feed={"id": "f"}, articles=[],
                  task=task, now=datetime.now(timezone.utc))
    assert "SECRET-TOKEN-1" not in text
