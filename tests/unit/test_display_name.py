"""Display names appear in mails and logs: no control or line-break characters."""

from __future__ import annotations

import pytest

from authgate.errors import InvalidRequest
from authgate.service.accounts import check_display_name


@pytest.mark.parametrize(
    "name", ["Ada", "Ada Lovelace", "Zoë Ça", "<b>Ada</b> & co", "李 小龍", "x" * 200, None]
)
def test_ordinary_names_pass(name: str | None) -> None:
    assert check_display_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Ada\nSECURITY ALERT: click https://evil.example",
        "Ada\r\nBcc: someone@example.com",
        "Ada\x00",
        "Ada\x1b[31m",
        "Ada\u2028line",
        "Ada\u202egnp.exe",
        "x" * 201,
    ],
)
def test_control_characters_and_long_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        check_display_name(name)
