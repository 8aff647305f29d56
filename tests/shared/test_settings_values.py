"""Flags read the same way from the parent's and the child's configuration."""

from __future__ import annotations

import pytest

from child.config import ConfigError as ChildConfigError
from child.config import load_config
from parent.config import ConfigError as ParentConfigError
from parent.config import load_settings
from shared.settings_values import parse_bool


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("1", True), ("0", False), (" Yes ", True), ("no", False),
    ("ON", True), ("off", False), (1, True), (0, False),
])
def test_a_flag_reads_the_usual_spellings(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", None])
def test_anything_else_is_refused(value):
    with pytest.raises(ValueError):
        parse_bool(value)


def test_both_sides_name_the_setting_a_bad_flag_was_given_for(tmp_path):
    with pytest.raises(ParentConfigError, match=r"cascade\.enabled: expected true or false"):
        load_settings({"secret_key": "k" * 32, "cascade": {"enabled": "maybe"}}, environ={})
    with pytest.raises(ChildConfigError, match="expected true or false, got 'maybe'"):
        load_config(environ={
            "CASCADE_PARENT_URL": "http://parent.invalid", "CASCADE_API_KEY": "CN" + "a" * 32,
            "CASCADE_API_SECRET": "CS" + "b" * 32, "CASCADE_DATA_DIR": str(tmp_path),
            "CASCADE_ALLOW_PRIVATE_ADDRESSES": "maybe"})
