"""--tmpfs's mode= is octal digits only: Python's int(text, 8) alone would also take '0o755',
'+755', '7_55' and ' 755', forms the kernel's mode= never reads, which the message then shows
as something else than was asked."""

from __future__ import annotations

import pytest

from nucleus.config.tmpfs import parse
from nucleus.errors import InvalidInput


@pytest.mark.parametrize("mode", ["0o755", "+755", "7_55", " 755", "-0", ""])
def test_a_mode_that_is_not_octal_digits_is_refused(mode):
    with pytest.raises(InvalidInput) as e:
        parse(f"/a:mode={mode}")
    assert e.value.message == f"--tmpfs '/a:mode={mode}': mode {mode!r} is not an octal mode"


@pytest.mark.parametrize(("mode", "value"), [("0700", 0o700), ("1777", 0o1777), ("2770", 0o2770), ("0", 0)])
def test_octal_digits_are_the_mode(mode, value):
    assert parse(f"/a:mode={mode}").mode == value
