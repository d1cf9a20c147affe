"""A message template that passes validation never raises when it renders, whatever the values."""

from __future__ import annotations

import itertools
import logging

import pytest

from vigil.config.template import FIELDS, check_template, render
from vigil.errors import ConfigError

FILLS = ["", "<", ">", "^", "=", "*^", "x<"]
SIGNS = ["", "+", "-", " "]
FLAGS = ["", "z", "#", "0", "z#0"]
WIDTHS = ["", "5", "999"]
GROUPS = ["", ",", "_"]
PRECISIONS = ["", ".0", ".99"]
TYPES = ["", *"bcdeEfFgGnosxX%"]
SPECS = ["".join(p) for p in itertools.product(FILLS, SIGNS, FLAGS, WIDTHS, GROUPS, PRECISIONS, TYPES)]
HOSTILE_VALUES = [
    {"media_id": 10**12, "score": float("nan"), "min_score": float("inf"), "start_s": -0.0, "end_s": 1e300},
    {"media_id": -1, "score": -1e-300, "min_score": 0, "start_s": 0, "end_s": 0},
    {"media_id": 0x110000, "score": 1.0, "path": "\x1b[2J" * 1000, "file": "", "evidence": "{x}"},
]


def test_media_id_c_is_refused_at_validation() -> None:
    with pytest.raises(ConfigError, match="format spec 'c' is not allowed"):
        check_template("#{media_id:c}", where="alerts.rules[r].message")


def test_every_valid_spec_renders_with_hostile_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)  # fallbacks warn; thousands of them here
    valid = 0
    for field, spec in itertools.product(FIELDS, SPECS):
        template = f"a {{{field}:{spec}}} b"
        try:
            check_template(template, where="t")
        except ConfigError:
            continue
        valid += 1
        for hostile in HOSTILE_VALUES:
            values = {**FIELDS, **hostile}
            rendered = render(template, values, where="t")
            assert rendered.startswith("a ") and rendered.endswith(" b")
    assert valid > 1000  # the check lets real formats through


def test_a_value_that_no_longer_fits_falls_back_to_plain_text() -> None:
    assert render("{score:.0%} at {path}", {**FIELDS, "score": "n/a"}) == "n/a at /path/to/file.mp4"
    with pytest.raises(ConfigError, match="not allowed"):  # a template that bypassed validation
        render("{score.__class__}", FIELDS)
