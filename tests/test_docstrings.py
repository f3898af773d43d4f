"""Every ``>>>`` example in the library's docstrings runs as written (doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import matplotlib
import pytest

import pellucid

matplotlib.use("Agg")

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(pellucid.__path__, "pellucid.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_public_api_has_examples():
    """The facade, explain, evaluate, benchmark and the targets each show a runnable example."""
    finder = doctest.DocTestFinder()
    for obj in (pellucid, pellucid.explain, pellucid.evaluate, pellucid.benchmark,
                pellucid.targets.region, pellucid.Explanation.save):
        assert any(test.examples for test in finder.find(obj)), obj
