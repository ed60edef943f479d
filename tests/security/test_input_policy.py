"""Input policy: a new email address passes email-validator (no control characters, CR/LF
or NUL, a dotted domain, no DNS lookup) and is normalised as before (NFKC, case-folded);
a new password that is repetitive or sequential (NIST SP 800-63B 3.1.1.2) is refused with
its own problem code, beside the list of common passwords."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.http import PASSWORD, assert_problem, bearer, new_email
from api.server import LiveServer, running_server
from authgate.errors import InvalidRequest, PredictablePassword, WeakPassword
from authgate.passwords import check_new_password, common_passwords, predictability
from authgate.service.accounts import lookup_email, normalize_email
from authgate.storage.base import UserRecord


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("input-policy")
    with running_server(folder) as server:
        yield server


# --- email ---------------------------------------------------------------------------------

BAD_EMAILS = {
    "nul-in-local-part": "a\x00b@example.com",
    "nul-in-domain": "ab@exam\x00ple.com",
    "crlf-header-injection": "ab@example.com\r\nBcc: victim@example.com",
    "cr-in-local-part": "a\rb@example.com",
    "lf-in-local-part": "a\nb@example.com",
    "escape": "a\x1bb@example.com",
    "delete": "a\x7fb@example.com",
    "c1-control": "a\x85b@example.com",
    "bidi-override": "a\u202eb@example.com",
    "no-dot-in-domain": "user@intranet",
    "localhost": "user@localhost",
    "empty-domain-label": "user@example..com",
    "domain-starts-with-hyphen": "user@-example.com",
    "domain-literal": "user@[127.0.0.1]",
    "dot-first": ".user@example.com",
    "two-dots": "us..er@example.com",
}


@pytest.mark.parametrize("email", BAD_EMAILS.values(), ids=BAD_EMAILS.keys())
def test_input_policy_malformed_email_is_refused_at_registration(
    live: LiveServer, email: str
) -> None:
    r = live.http.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert_problem(r, 400, "invalid_request")
    with pytest.raises(InvalidRequest):
        normalize_email(email)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("  \uff21dmin@\uff38.COM ", "admin@x.com"),  # full-width: NFKC, case-folded, stripped
        ("ÉLODIE@Exemple.fr", "élodie@exemple.fr"),
        ("Straße@Example.com", "strasse@example.com"),
        ("用户@例子.广告", "用户@例子.广告"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
    ],
)
def test_input_policy_good_email_is_normalised_as_before(given: str, stored: str) -> None:
    assert normalize_email(given) == stored == lookup_email(given)


def test_input_policy_an_account_from_before_the_stricter_check_still_logs_in(
    live: LiveServer,
) -> None:
    """An address the old rule let in (no dot in its domain) is not turned away at login."""
    email = f"legacy-{new_email().split('@')[0]}@intranet"

    async def create() -> None:
        svc = live.services
        await svc.storage.create_user(
            UserRecord(
                id="usr_legacy_" + email[7:19],
                email=email,
                password_hash=await svc.hasher.hash(PASSWORD),
                created_at=live.clock.now(),
            )
        )

    live.call(create())
    assert live.login(email.upper())["access_token"]


# --- passwords ---------------------------------------------------------------------------

PREDICTABLE = {
    "one-letter": "aaaaaaaaaaaaaaaa",
    "sixteen-spaces": " " * 16,
    "counting-digits": "1234567890123456",
    "counting-down": "9876543210987654",
    "alphabet": "abcdefghijklmnop",
    "alphabet-backwards": "zyxwvutsrqponmlk",
    "keyboard-rows": "qwertyuiopasdfgh",
    "two-runs": "5678efgh",
    "two-repeats": "aaaa7777",
    "two-letters": "abababababababab",
    "any-case": "AaAaAaAaAaAaAaAa",
    "three-letters": "abcabcabcabcabc",
}


@pytest.mark.parametrize("password", PREDICTABLE.values(), ids=PREDICTABLE.keys())
def test_input_policy_predictable_password_is_refused(live: LiveServer, password: str) -> None:
    assert password.casefold() not in common_passwords()  # so this is the rule refusing it
    email = new_email()
    r = live.http.post("/auth/register", json={"email": email, "password": password})
    assert_problem(r, 400, "password_too_predictable")
    with pytest.raises(PredictablePassword):
        check_new_password(password)
    # Nothing was created: a good password registers the same email afterwards.
    token = live.register(email)["access_token"]
    r = live.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": password},
        headers=bearer(token),
    )
    assert_problem(r, 400, "password_too_predictable")
    live.login(email)  # the password did not change


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "Tr0ub4dor&3xyz",
        "gentle-otter-57-jumps",
        "ab12cd34ef56",
        "Zq9!" * 256,  # 1024 bytes: four distinct characters is enough
        "été à l'ombre 2024",
    ],
)
def test_input_policy_ordinary_passwords_are_accepted(password: str) -> None:
    assert predictability(password) is None
    check_new_password(password)


def test_input_policy_the_common_list_keeps_its_code(live: LiveServer) -> None:
    """A password on the common list is still weak_password, even when also sequential."""
    assert "1234abcd" in common_passwords()
    assert predictability("1234abcd") == "sequential"
    r = live.http.post("/auth/register", json={"email": new_email(), "password": "1234abcd"})
    assert_problem(r, 400, "weak_password")


def test_input_policy_the_problem_is_problem_json(live: LiveServer) -> None:
    r = live.http.post(
        "/auth/register", json={"email": new_email(), "password": "aaaaaaaaaaaaaaaa"}
    )
    assert r.headers["content-type"] == "application/problem+json"
    assert "aaaaaaaa" not in r.text  # the password is never echoed


@pytest.mark.parametrize("password", ["\ufdfa", "\ufdfb", "\ufdfa\ufdfb", "\u3300\u3301\u3302"])
def test_input_policy_short_password_expanding_under_nfkc_is_refused(
    live: LiveServer, password: str
) -> None:
    """U+FDFA is one keystroke and 18 characters after NFKC: the length is counted as typed
    too, so a one-character password never passes for eight."""
    import unicodedata

    assert len(unicodedata.normalize("NFKC", password)) >= 8  # what used to pass the check
    with pytest.raises(WeakPassword):
        check_new_password(password)
    r = live.http.post("/auth/register", json={"email": new_email(), "password": password})
    assert_problem(r, 400, "weak_password")
