"""API fuzzing with schemathesis against /openapi.json of a running server.

Every operation is fuzzed twice: without credentials, and with an admin bearer token (a
fresh session for every request, so that fuzzed logouts do not starve the rest). Three
checks hold for every response: no 5xx, the body conforms to the documented schema of its
status, and the Content-Type is one the document names.

The CI budget is FUZZ_API_EXAMPLES examples per operation and mode (default 20), from a
fixed seed; bench/fuzz_api.sh runs the same tests with 200 from a random seed
(FUZZ_API_RANDOM=1) and writes the per-operation counts to FUZZ_API_REPORT (JSON).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from ._live import LiveServer, openapi_document

EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "20"))
REPORT = os.environ.get("FUZZ_API_REPORT")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# The revocation feed long-polls for up to `wait` seconds of real time when no event is
# newer than `after`; the fuzzer keeps every other value but waits at most this long.
MAX_WAIT = 0.05
TIMEOUT = 30.0  # a request that hangs is a failure, not a stuck CI job
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_API_RANDOM") != "1",
    suppress_health_check=list(HealthCheck),
)

# (mode, "METHOD /path" of the operation) -> requests sent, of which probes of undocumented
# methods, and the status codes seen
SENT: Counter[tuple[str, str]] = Counter()
PROBES: Counter[tuple[str, str]] = Counter()
STATUSES: defaultdict[tuple[str, str], Counter[int]] = defaultdict(Counter)
FAILURES: defaultdict[tuple[str, str], set[str]] = defaultdict(set)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if REPORT:
        rows = [
            {
                "mode": mode,
                "operation": label,
                "sent": SENT[(mode, label)],
                "method_probes": PROBES[(mode, label)],
                "statuses": dict(sorted(STATUSES[(mode, label)].items())),
                "failures": sorted(FAILURES[(mode, label)]),
            }
            for mode, label in sorted(SENT)
        ]
        Path(REPORT).write_text(json.dumps(rows, indent=1))


DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_fuzzed_document_is_the_served_one(live: LiveServer) -> None:
    """The operations below come from the document the running server serves, unchanged."""
    served = requests.get(f"{live.url}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def _cap_wait(case: Any) -> None:
    query = case.query
    if not isinstance(query, dict) or "wait" not in query:
        return
    try:
        wait = float(query["wait"])
    except (TypeError, ValueError):
        return
    if wait > MAX_WAIT:
        query["wait"] = MAX_WAIT


def _describe(failure: Failure) -> str:
    message = " ".join(failure.message.split())[:300]
    return f"{failure.code} {failure.title}: {message}"


def _fuzz(
    case: Any, mode: str, base_url: str, session: requests.Session, headers: dict[str, str]
) -> None:
    label = case.operation.label
    _cap_wait(case)
    SENT[(mode, label)] += 1
    if case.method.upper() != case.operation.method.upper():
        PROBES[(mode, label)] += 1
    try:
        response = case.call_and_validate(
            base_url=base_url, session=session, headers=headers, checks=CHECKS, timeout=TIMEOUT
        )
    except FailureGroup as group:
        FAILURES[(mode, label)].update(_describe(f) for f in group.exceptions)
        raise
    except Exception as exc:  # a transport error (reset, timeout) is a finding too
        FAILURES[(mode, label)].add(f"{type(exc).__name__}: {str(exc)[:300]}")
        raise
    STATUSES[(mode, label)][response.status_code] += 1


@schema.parametrize()
@FUZZ_SETTINGS
def test_unauthenticated(case: Any, http: requests.Session, live: LiveServer) -> None:
    """No credentials at all."""
    _fuzz(case, "anonymous", live.url, http, {})


@schema.parametrize()
@FUZZ_SETTINGS
def test_admin(case: Any, http: requests.Session, live: LiveServer, admin_token: str) -> None:
    """An admin bearer token, fresh for every request."""
    _fuzz(case, "admin", live.url, http, {"Authorization": f"Bearer {live.fresh_admin_token()}"})
