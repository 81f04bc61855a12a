"""`--env-file` (nucleus.config.env_file): Docker's format, each variable held to -e's rules,
errors that name the file, the line and the variable but never a value. Pure."""

from __future__ import annotations

import pytest

from nucleus.config import env_file
from nucleus.errors import InvalidInput

CALLER = {"FROM_CALLER": "caller's value", "EMPTY": ""}


def parse(text: str | bytes, environ=CALLER):
    data = text.encode() if isinstance(text, str) else text
    return env_file.parse(data, "app.env", environ)


def test_dockers_format():
    text = ("# a comment\n"
            "\n"
            "A=1\n"
            "   B=two words  \n"  # leading space dropped, the value verbatim to the end of the line
            "C=\"quoted\"\n"  # quotes are part of the value
            "D=a=b\n"
            "E=\n"
            "FROM_CALLER\n"  # a bare name takes the caller's value
            "EMPTY\n"
            "UNSET_HERE\n"  # ... and is left out when the caller has none
            "F=crlf\r\n"
            "  # an indented comment\n")
    assert parse(text) == (("A", "1"), ("B", "two words  "), ("C", '"quoted"'), ("D", "a=b"), ("E", ""),
                           ("FROM_CALLER", "caller's value"), ("EMPTY", ""), ("F", "crlf"))


def test_files_are_read_in_order_and_a_later_value_wins_later():
    pairs = env_file.parse_all([("a.env", b"X=1\nY=1\n"), ("b.env", b"X=2\n")], {})
    assert pairs == (("X", "1"), ("Y", "1"), ("X", "2")) and dict(pairs) == {"X": "2", "Y": "1"}


SECRET = "s3cr3t-value"


@pytest.mark.parametrize("text,message", [
    (f"A=1\nLD_PRELOAD=/tmp/{SECRET}.so\n",
     "--env-file 'app.env', line 2: LD_PRELOAD is refused: it changes how the dynamic loader loads code"),
    (f"GCONV_PATH={SECRET}\n", "--env-file 'app.env', line 1: GCONV_PATH is refused"),
    (f"=value {SECRET}\n", "--env-file 'app.env', line 1: no variable name before '='"),
    (f"1BAD={SECRET}\n", "--env-file 'app.env', line 1: not KEY=VALUE or KEY: no valid variable name"),
    (f"A=1\n\nKEY ={SECRET}\n", "--env-file 'app.env', line 3: not KEY=VALUE or KEY"),
    (f"-----BEGIN PRIVATE KEY {SECRET}\n", "--env-file 'app.env', line 1: not KEY=VALUE or KEY"),
    (f"A={SECRET}\0x\n", "--env-file 'app.env', line 1: the value of A holds a NUL byte"),
])
def test_a_bad_line_names_the_file_line_and_variable_never_the_value(text, message):
    with pytest.raises(InvalidInput) as e:
        parse(text)
    assert e.value.message.startswith(message), e.value.message
    assert SECRET not in e.value.render()


def test_a_file_that_is_not_utf8_names_the_line():
    with pytest.raises(InvalidInput, match=r"'app.env', line 2: not UTF-8 text"):
        parse(b"A=1\nB=\xff\xfe\n")
