"""The guard's shape, checked from its source: no import cycle, adapters loaded only when
used, no reach into another package's private modules or into the Guard's private members,
time only from the injected clock, and the refusal headers built in one place."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import authgate

SRC = Path(authgate.__file__).resolve().parent
GUARD = SRC / "guard"
ADAPTERS = ("asgi", "fastapi", "flask", "django")
FRAMEWORKS = ("starlette", "fastapi", "flask", "django")
CLIENT_SIDE = ("_http", "jwks", "feed")  # they read the headers of what they fetch


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def guard_modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text("utf-8")) for p in sorted(GUARD.glob("*.py"))}


def module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run (or, under TYPE_CHECKING, are read) when the module loads:
    into if/try/with blocks and class bodies, never into function bodies."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from module_level(getattr(node, name, []))
        for handler in getattr(node, "handlers", []):
            yield from module_level(handler.body)


def imported(node: ast.stmt, here: str, known: set[str], *, package: bool = False) -> set[str]:
    """The modules of ``known`` an import statement in module ``here`` names (a ``from
    package import submodule`` names the submodule too); ``package``: ``here`` is one."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:
        parts = here.split(".")
        parent = parts[: len(parts) - node.level + (1 if package else 0)]
        base = ".".join([*parent, *([base] if base else [])])
    submodules = {f"{base}.{alias.name}" for alias in node.names}
    # The package itself only when a name is taken from it rather than a submodule.
    return (submodules & known) | ({base} & known if submodules - known else set())


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def import_graph(
    modules: dict[str, ast.Module], packages: frozenset[str] = frozenset({"authgate.guard"})
) -> dict[str, set[str]]:
    known = set(modules)
    return {
        name: {
            m
            for node in module_level(tree.body)
            for m in imported(node, name, known, package=name in packages)
        }
        - {name}
        for name, tree in modules.items()
    }


def test_import_cycle_none_in_the_guard() -> None:
    # Every module-level import counts, those under TYPE_CHECKING too: the adapters use
    # guard.py, so guard.py names none of them at module level.
    graph = import_graph(guard_modules())
    assert graph["authgate.guard.asgi"] >= {"authgate.guard.guard"}  # the scan sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_import_cycle_checker_finds_a_cycle() -> None:
    modules = {
        "p": ast.parse("from .c import x\n"),
        "p.a": ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.b\n"),
        "p.b": ast.parse("from p import a\n\ndef f():\n    import p.c\n"),
        "p.c": ast.parse("from . import b\n"),
    }
    graph = import_graph(modules, frozenset({"p"}))
    assert graph == {"p": {"p.c"}, "p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": {"p.b"}}
    assert find_cycle(graph) == ["p.b", "p.a", "p.b"]
    assert find_cycle({**graph, "p.a": set()}) is None  # a lazy import is no arrow


def test_import_cycle_guard_module_imports_no_adapter() -> None:
    # guard.py imports each adapter inside the method that needs it: loading the guard
    # (and verifying with it) loads no adapter and no web framework.
    code = (
        "import sys\n"
        "from authgate.guard import Guard\n"
        "import authgate.guard.guard\n"
        "from authgate.jose import Key\n"
        "Guard(keys=Key.generate('ES256'), audience='api', revocation='off')\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loaded = set(run.stdout.split())
    assert "authgate.guard.guard" in loaded
    adapters = {f"authgate.guard.{name}" for name in ADAPTERS}
    frameworks = {m for m in loaded if m.split(".")[0] in FRAMEWORKS}
    assert not (loaded & adapters), sorted(loaded & adapters)
    assert not frameworks, sorted(frameworks)


def test_private_module_import_none_across_packages() -> None:
    # A private module (authgate.jose._json, ...) is its own package's business: the
    # guard uses public names only, wherever the import stands.
    found = []
    for name, tree in guard_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                private = any(p.startswith("_") for p in parts[1:])
                if parts[0] == "authgate" and private and not target.startswith("authgate.guard."):
                    found.append(f"{name}: {target}")
    assert found == []


def test_clock_bypass_no_wall_clock_read_in_the_guard() -> None:
    # Every time decision comes from the injected Clock: no guard module imports the
    # process's clocks (time.time, time.monotonic, datetime.now).
    found = []
    for name, tree in guard_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            found += [f"{name}: {m}" for m in mods if m.split(".")[0] in ("time", "datetime")]
    assert found == []


def test_private_api_reach_adapters_use_only_public_guard_names() -> None:
    # The adapters verify through Guard.verify_cached / verify / verify_sync: no
    # `guard._anything` (a private member can change under them).
    found = []
    for name, tree in guard_modules().items():
        if name.rsplit(".", 1)[-1] not in (*ADAPTERS, "principal", "responses", "_metrics"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "guard") or (
                isinstance(owner, ast.Attribute) and owner.attr == "guard"
            ):
                found.append(f"{name}:{node.lineno}: .{node.attr}")
    assert found == []


@pytest.mark.parametrize("header", ["www-authenticate", "cache-control", "content-type"])
def test_response_drift_challenge_headers_built_in_one_place(header: str) -> None:
    # The status, headers and body of a refusal come from responses.challenge(); an
    # adapter only hands them to its framework.
    found = []
    for name, tree in guard_modules().items():
        if name.rsplit(".", 1)[-1] in ("responses", *CLIENT_SIDE):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                value = node.value
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                if text.strip().lower() == header:
                    found.append(f"{name}:{node.lineno}")
    assert found == []
