"""safe_name: file names with control characters stay on one line and cannot fake terminal output."""

from __future__ import annotations

from pathlib import Path

from apir.errors import safe_name


def test_safe_name_escapes_control_and_invisible_characters():
    assert safe_name("a\nb\tc\x1b[0m.png") == "a\\nb\\tc\\x1b[0m.png"
    assert safe_name("gpj.\u202eexe") == "gpj.\\u202eexe"  # a right-to-left override cannot hide
    assert safe_name(Path("Prüfung/画像 1.png")) == "Prüfung/画像 1.png"  # printable text is kept
    assert safe_name("bad\udcffbyte") == "bad\\xffbyte"  # undecodable byte from os.fsdecode
