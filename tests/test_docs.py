"""The documentation's Python examples run as written, and every setting is documented.

The ```python blocks of README.md run in order in one namespace, and so do those of every
page under docs/ (each page in its own namespace, in a temporary directory, with
matplotlib's Agg backend): one test per page, found by glob, so a new page is tested
without being listed here. Blocks that must not run (shell sessions, pseudo-code) use
another fence language (```text, ```bash).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
from pathlib import Path

import matplotlib
import pytest

import pellucid
from pellucid.method import METHODS

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("**/*.md"))

#: the page that documents each registered method's settings (an LRP name not listed here
#: is documented in docs/lrp.md)
METHOD_PAGES = {
    "gradient": "methods/gradients.md",
    "sensitivity": "methods/gradients.md",
    "saliency": "methods/gradients.md",
    "gradient_x_input": "methods/gradients.md",
    "integrated_gradients": "methods/integrated.md",
    "expected_gradients": "methods/integrated.md",
    "smoothgrad": "methods/noise.md",
    "smoothgrad_squared": "methods/noise.md",
    "vargrad": "methods/noise.md",
    "gradcam": "methods/cam_fullgrad.md",
    "gradcam_plus_plus": "methods/cam_fullgrad.md",
    "fullgrad": "methods/cam_fullgrad.md",
    "occlusion": "methods/perturbation.md",
    "rise": "methods/perturbation.md",
    "lime": "methods/perturbation.md",
    "kernel_shap": "methods/perturbation.md",
    "deeplift": "methods/deeplift.md",
    "excitation_backprop": "methods/excitation_backprop.md",
    "excitation_backprop.contrastive": "methods/excitation_backprop.md",
    "attention_rollout": "methods/attention.md",
    "attention_flow": "methods/attention.md",
    "generic_attention": "methods/attention.md",
}


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fences of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def run_blocks(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run the Python blocks of ``path`` in order in one namespace; return the namespace.

    The namespace is a module registered in ``sys.modules`` for the run, so that classes the
    examples define (dataclasses, pickling) find their module as they would in a script.
    """
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in python_blocks(path.read_text()):
        exec(compile(block, str(path), "exec"), module.__dict__)
    return module.__dict__


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(python_blocks(README.read_text())) >= 3
    namespace = run_blocks(README, monkeypatch)
    assert namespace["e"].attribution.shape == namespace["images"].shape
    assert (tmp_path / "lrp.png").exists()
    assert len(namespace["prototypes"]) == 2


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_docs_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        run_blocks(page, monkeypatch)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def test_every_page_is_collected():
    found = {str(p.relative_to(DOCS)) for p in PAGES}
    assert {"lrp.md", "methods/integrated.md", "methods/noise.md"} <= found
    assert len(found) == len(list(DOCS.rglob("*.md")))


def test_python_blocks_are_found_as_fenced():
    text = "a\n```python\nx = 1\n```\n```text\nnot run\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]


def test_every_method_setting_is_documented_on_its_page():
    missing = []
    for entry in METHODS.entries():
        page = DOCS / METHOD_PAGES.get(entry.name, "lrp.md")
        text = page.read_text()
        if f"`{entry.name}`" not in text:
            missing.append(f"{entry.name}: not named on {page.relative_to(ROOT)}")
        for setting in dataclasses.fields(entry.obj):
            if f"`{setting.name}`" not in text:
                missing.append(f"{entry.name}.{setting.name}: not on {page.relative_to(ROOT)}")
    assert not missing, "\n".join(missing)


def test_every_method_has_a_page():
    assert set(METHOD_PAGES) <= set(pellucid.list_methods())
    assert all((DOCS / page).exists() for page in set(METHOD_PAGES.values()))
