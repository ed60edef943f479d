"""The layering of DESIGN.md, read from the source (nothing is imported or run):

- ``service/`` knows the storage Protocols, never the settings, a concrete store, the
  composition root, the HTTP layer or FastAPI;
- ``jose/`` imports only ``errors`` and ``clock`` from the project;
- no module imports a private module (``_name``) of another package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "authgate"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
FORBIDDEN_IN_SERVICE = (
    "authgate.settings",
    "authgate.wiring",
    "authgate.storage.sql",
    "authgate.storage.redis",
    "authgate.server",
    "authgate.guard",
    "fastapi",
    "starlette",
)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("name", [m for m in MODULES if _under(m, "authgate.service")])
def test_layering_service_imports_no_settings_store_or_http(name: str) -> None:
    bad = sorted(
        m for m in _imports(MODULES[name]) if any(_under(m, f) for f in FORBIDDEN_IN_SERVICE)
    )
    assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", [m for m in MODULES if _under(m, "authgate.jose")])
def test_layering_jose_imports_only_errors_and_clock(name: str) -> None:
    ours = {m for m in _imports(MODULES[name]) if _under(m, "authgate")}
    bad = sorted(
        m
        for m in ours
        if not any(_under(m, p) for p in ("authgate.jose", "authgate.errors", "authgate.clock"))
    )
    assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", list(MODULES))
def test_private_module_import_none_across_packages(name: str) -> None:
    own_package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    bad = []
    for module in _imports(MODULES[name]):
        parts = module.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                if owner and not _under(own_package, owner):
                    bad.append(module)
                break
    assert not bad, f"{name} imports private modules of another package: {sorted(bad)}"
