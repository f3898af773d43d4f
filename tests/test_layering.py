"""The layers of docs/design.md, enforced: which package of pellucid may import which.

Every module under ``src/pellucid`` is parsed (function-local imports included) and each
``pellucid`` import is checked against ``ALLOWED``. Applications (``cli``, ``report``) sit on
top: no library package may import them, and the library may not import the generated
world (``data``, ``models``) that the applications are built on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pellucid

ROOT = Path(pellucid.__file__).parent
CORE = "core"  # the top-level modules: api, method, task, targets, guard, layers, ...
APPLICATIONS = {"cli", "report"}

#: package -> the packages its modules may import (a package may always import itself)
ALLOWED: dict[str, set[str]] = {
    CORE: set(),
    "perturb": {CORE},
    "attribution": {CORE, "perturb"},
    "lrp": {CORE, "perturb"},
    "metrics": {CORE, "perturb"},
    "features": {CORE, "perturb"},
    "concepts": {CORE, "perturb"},
    "viz": {CORE},
    "data": {CORE},
    "models": {CORE, "data"},
    "analysis": {CORE},
    "runs": {CORE, "perturb", "metrics", "analysis"},
    "report": {CORE, "perturb", "attribution", "lrp", "metrics", "features", "concepts", "viz",
               "data", "models", "analysis", "runs"},
    "cli": {CORE, "perturb", "attribution", "lrp", "metrics", "features", "concepts", "viz",
            "data", "models", "report", "analysis", "runs"},
}
#: the package's ``__init__`` is the public facade: it imports what registers methods/metrics
FACADE_ALLOWED = {CORE, "attribution", "lrp", "metrics", "runs"}
#: documented exceptions, (module, package it may import) inside functions only (checked by
#: test_exceptions_are_function_local): ``Explanation.plot`` and ``_repr_png_`` import
#: ``viz.display``. Showing itself is a presentation of the result, not a computation;
#: ``viz`` never imports ``explanation`` (it reads ``.attribution`` and ``.inputs`` from
#: whatever it is given), so there is no cycle, and ``import pellucid`` still imports
#: neither ``viz`` nor matplotlib (tests/test_display.py checks it).
EXCEPTIONS: set[tuple[str, str]] = {("pellucid.explanation", "viz")}


def package_of(module: str) -> str:
    """``pellucid.lrp.rules`` -> ``lrp``; ``pellucid.task`` -> core; ``pellucid.__main__``
    (what ``python -m pellucid`` runs) -> ``cli``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "facade"
    if parts[1] == "__main__":
        return "cli"
    candidate = ROOT / parts[1]
    return parts[1] if candidate.is_dir() else CORE


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> list[str]:
    """Every ``pellucid`` module that ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, root).split(".")
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if node.module is None or (root / "/".join(stem.split(".")[1:])).is_dir():
                # ``from . import x`` or ``from pkg import submodule`` imports submodules
                found += [f"{stem}.{alias.name}" for alias in node.names]
            found.append(stem)
    return [m for m in found if m == "pellucid" or m.startswith("pellucid.")]


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"add {packages - set(ALLOWED)} to ALLOWED and design.md"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    source = package_of(module_name(path))
    allowed = FACADE_ALLOWED if source == "facade" else ALLOWED[source] | {source}
    allowed = allowed | {pkg for module, pkg in EXCEPTIONS if module == module_name(path)}
    wrong = sorted(
        {m for m in imported_modules(path) if package_of(m) not in allowed and m != "pellucid"}
    )
    if source != "facade" and source not in APPLICATIONS:
        wrong += sorted(m for m in imported_modules(path) if m == "pellucid")
    assert not wrong, f"{module_name(path)} ({source}) may not import {wrong}"


def test_exceptions_are_function_local():
    """An exception's imports sit inside functions, and the package it imports never
    imports the module back."""
    for module, package in EXCEPTIONS:
        path = ROOT.joinpath(*module.split(".")[1:]).with_suffix(".py")
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        guarded = [n for n in tree.body if isinstance(n, ast.If)]  # if TYPE_CHECKING:
        for node in top + [n for g in guarded for n in ast.walk(g)
                           if isinstance(n, (ast.Import, ast.ImportFrom))]:
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom):  # ``from . import viz``, ``from .viz import x``
                names = [node.module] if node.module else names
            assert not any(n == package or n.startswith(f"{package}.") or
                           n.startswith(f"pellucid.{package}") for n in names), (
                f"{module} imports {package} at module level")
        back = [p for p in MODULES if package_of(module_name(p)) == package]
        assert not [p for p in back if module in imported_modules(p)], (
            f"{package} imports {module}: a cycle")


def test_no_library_package_imports_an_application():
    library = [p for p in MODULES if package_of(module_name(p)) not in APPLICATIONS]
    offenders = {
        module_name(p): sorted(m for m in imported_modules(p) if package_of(m) in APPLICATIONS)
        for p in library
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_checker_sees_relative_and_local_imports(tmp_path):
    """The checker itself: function-local relative imports of an application are found."""
    root = tmp_path / "pellucid"
    for package in ("metrics", "report", "cli"):
        (root / package).mkdir(parents=True)
    probe = root / "metrics" / "probe.py"
    probe.write_text("def f():\n    from ..report import html\n    from .. import cli\n")
    assert set(imported_modules(probe, root)) >= {"pellucid.report.html", "pellucid.cli"}
    assert package_of("pellucid.report.html") == "report"
