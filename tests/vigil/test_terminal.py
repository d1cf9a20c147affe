"""Names with ESC, OSC, CSI and \\r cannot rewrite the terminal of whoever prints them."""

from __future__ import annotations

import pytest

from vigil.terminal import safe

HOSTILE = "cam\x1b]0;owned\x07\x1b[2J\rfake\x9b31m\x7f\u202etxt.mp4\tx\ny"


def test_every_control_character_is_shown_escaped() -> None:
    assert safe(HOSTILE) == "cam\\x1b]0;owned\\x07\\x1b[2J\\rfake\\x9b31m\\x7f\\u202etxt.mp4\\tx\\ny"


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0)])
def test_no_c0_or_c1_control_survives(code: int) -> None:
    shown = safe(f"a{chr(code)}b")
    assert all(0x20 <= ord(c) < 0x7F for c in shown), shown


def test_printable_text_is_unchanged() -> None:
    assert safe("Fahrzeug vor dem Tor — 東京 ok") == "Fahrzeug vor dem Tor — 東京 ok"
