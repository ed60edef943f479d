"""``__all__`` lists exactly the public names each public module defines or re-exports.

Add a module to ``PUBLIC_MODULES`` as it appears (``authgate``, ``authgate.guard``, ...).

A module's public names are read from its source: what it defines at top level
(functions, classes, assignments) without a leading underscore, plus, for a package
``__init__``, what it imports from inside ``authgate``. Names imported from elsewhere
(``typing.Any``, ``__future__.annotations``) and submodules are never public. A runtime
pass then checks that no public authgate class or function escapes the source scan.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from pathlib import Path

import pytest

PROJECT = "authgate"

_TYPE_ALIAS = getattr(ast, "TypeAlias", ())

PUBLIC_MODULES = [
    "authgate",
    "authgate.jose",
    "authgate.errors",
    "authgate.clock",
    "authgate.settings",
    "authgate.wiring",
    "authgate.jsonbody",
    "authgate.guard",
    "authgate.server",
    "authgate.bearer",
]


def _is_package(module: types.ModuleType) -> bool:
    return hasattr(module, "__path__")


def _absolute(module: types.ModuleType, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.__name__ if _is_package(module) else module.__name__.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, looking into if/try blocks but not into defs."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            # `if TYPE_CHECKING:` imports do not exist at runtime.
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name != "TYPE_CHECKING":
                out += _top_level(node.body)
            out += _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body)
            for handler in node.handlers:
                out += _top_level(handler.body)
            out += _top_level(node.orelse) + _top_level(node.finalbody)
    return out


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)]
    return []


def declared_public_names(module: types.ModuleType) -> set[str]:
    """The public names ``module`` defines or (for a package) re-exports, from its source."""
    source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
    tree = ast.parse(source)
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_target_names(target))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_target_names(node.target))
        elif isinstance(node, _TYPE_ALIAS):  # `type X = ...` (Python 3.12+)
            names.add(node.name.id)
        elif isinstance(node, ast.ImportFrom) and _is_package(module):
            origin = _absolute(module, node)
            if origin == PROJECT or origin.startswith(PROJECT + "."):
                for alias in node.names:
                    if alias.name == "*":
                        names.update(importlib.import_module(origin).__all__)
                    else:
                        names.add(alias.asname or alias.name)
    names.discard("__all__")
    return {
        n
        for n in names
        if not n.startswith("_") and not isinstance(getattr(module, n, None), types.ModuleType)
    }


def runtime_public_names(module: types.ModuleType) -> set[str]:
    """Public classes and functions of the project reachable as attributes of ``module``."""
    out = set()
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if inspect.isclass(value) or inspect.isfunction(value):
            owner = getattr(value, "__module__", "") or ""
            if owner == PROJECT or owner.startswith(PROJECT + "."):
                if not _is_package(module) and owner != module.__name__:
                    continue  # a plain module's imports are for its own use
                out.add(name)
    return out


def check_public_api(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert isinstance(exported, list | tuple), f"{module_name}.__all__ must be a list"
    assert all(isinstance(n, str) for n in exported)
    duplicates = sorted({n for n in exported if list(exported).count(n) > 1})
    assert not duplicates, f"{module_name}.__all__ lists {duplicates} twice"

    unresolved = sorted(n for n in exported if not hasattr(module, n))
    assert not unresolved, f"{module_name}.__all__ names {unresolved} that do not exist"
    private = sorted(n for n in exported if n.startswith("_"))
    assert not private, f"{module_name}.__all__ exports private names {private}"
    submodules = sorted(n for n in exported if isinstance(getattr(module, n), types.ModuleType))
    assert not submodules, f"{module_name}.__all__ exports modules {submodules}"

    declared = declared_public_names(module) | runtime_public_names(module)
    missing = sorted(declared - set(exported))
    extra = sorted(set(exported) - declared)
    assert not missing, f"{module_name} defines public {missing} but __all__ omits them"
    assert not extra, (
        f"{module_name}.__all__ lists {extra}, which it neither defines nor re-exports"
    )

    # `from module import *` gives exactly __all__.
    namespace: dict[str, object] = {}
    exec(f"from {module_name} import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(exported)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_exact(module_name: str) -> None:
    check_public_api(module_name)


def test_jose_reexports_are_the_same_objects() -> None:
    from authgate import jose
    from authgate.jose import _b64, _json, jws, jwt, keys

    for name in jose.__all__:
        value = getattr(jose, name)
        sources = [m for m in (jws, jwt, keys, _b64, _json) if name in vars(m)]
        assert sources, name
        assert all(vars(m)[name] is value for m in sources)


def test_jose_exports_the_documented_api() -> None:
    from authgate import jose

    documented = {
        "Key",
        "KeySet",
        "ClaimsPolicy",
        "encode",
        "decode",
        "sign",
        "verify",
        "ALGORITHMS",
    }
    assert documented <= set(jose.__all__)


# --- the checker itself must be able to fail -------------------------------------------------


def _fake_package(tmp_path: Path, name: str, source: str) -> types.ModuleType:
    pkg = tmp_path / name
    pkg.mkdir()
    init = pkg / "__init__.py"
    init.write_text(source, encoding="utf-8")
    module = types.ModuleType(name)
    module.__file__ = str(init)
    module.__path__ = [str(pkg)]
    exec(compile(source, str(init), "exec"), vars(module))
    return module


def test_declared_names_see_definitions_and_skip_foreign_imports(tmp_path: Path) -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import Any\n"
        "import os\n"
        "from authgate.errors import AuthgateError as Root, InvalidKey\n"
        "CONSTANT = 1\n"
        "_PRIVATE = 2\n"
        "a, (b, c) = 1, (2, 3)\n"
        "typed: int = 3\n"
        "def func(): pass\n"
        "class Thing: pass\n"
        "try:\n    from authgate.clock import FixedClock\nexcept ImportError:\n    pass\n"
        "__all__ = []\n"
    )
    module = _fake_package(tmp_path, "fakepkg", source)
    assert declared_public_names(module) == {
        "Root",
        "InvalidKey",
        "CONSTANT",
        "a",
        "b",
        "c",
        "typed",
        "func",
        "Thing",
        "FixedClock",
    }


def test_checker_reports_missing_and_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, source, message in [
        ("fake_missing", "def f(): pass\ndef g(): pass\n__all__ = ['f']\n", "omits"),
        ("fake_extra", "def f(): pass\n__all__ = ['f', 'g']\n", "do not exist"),
        ("fake_import", "from typing import Any\n__all__ = ['Any']\n", "neither defines"),
        ("fake_dup", "def f(): pass\n__all__ = ['f', 'f']\n", "twice"),
        ("fake_none", "def f(): pass\n", "no __all__"),
    ]:
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        with pytest.raises(AssertionError, match=message):
            check_public_api(name)
    (tmp_path / "fake_ok.py").write_text(
        "from typing import Any\nX: Any = 1\ndef f(): pass\n__all__ = ['X', 'f']\n",
        encoding="utf-8",
    )
    check_public_api("fake_ok")
