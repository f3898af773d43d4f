"""The demo's TCAV claim: the Clever-Hans watermark is a concept of the shortcut class only.

A small CNN is trained here on the Clever-Hans shapes data (every image of the shortcut
class carries the watermark in training); :func:`watermark_tcav` is the code path of the
demo report's TCAV section.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.data import clever_hans
from pellucid.report.tcav import tcav_table, watermark_tcav

SIZE = 24


@pytest.fixture(scope="module")
def shortcut():
    data = clever_hans(250, n_test=0, size=SIZE, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, len(data.train.class_names)),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = data.train.images, data.train.labels
    for _ in range(15):
        for batch in torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).split(50):
            optimiser.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), data.train.class_names, data.shortcut_class


def test_watermark_concept_is_significant_for_the_shortcut_class_only(shortcut, snapshot,
                                                                      untouched):
    model, names, shortcut_class = shortcut
    before = snapshot(model)
    _, results = watermark_tcav(model, names, SIZE, per_class=20, random_sets=10,
                                per_set=20, per_concept_run=10)
    untouched(model, before)
    assert set(results) == set(range(len(names)))
    assert results[shortcut_class].significant and results[shortcut_class].verdict == "positive"
    for k, result in results.items():
        if k != shortcut_class:
            assert not result.significant, (names[k], result)
    html = tcav_table(results, names, shortcut_class)
    assert html.count("<tr>") == len(names) + 1 and "shortcut class" in html
