"""A bar chart of TCAV results (matplotlib is imported when called)."""

from __future__ import annotations

from typing import Any


def plot_tcav(report: Any, ax: Any = None) -> Any:
    """Mean TCAV score per concept (±1 std over runs) beside the random-CAV scores.

    Significant concepts are marked with '*'. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(report.results), 3.2))
    else:
        fig = ax.figure
    positions = range(len(report.results))
    width = 0.38
    for i, result in zip(positions, report.results):
        pair = (
            (-width / 2, result.mean, result.std, "tab:blue", "concept"),
            (width / 2, result.random_mean, result.random_std, "tab:gray", "random"),
        )
        for offset, mean, std, colour, label in pair:
            ax.bar(
                i + offset,
                mean,
                width,
                yerr=std,
                color=colour,
                capsize=3,
                label=label if i == 0 else None,
            )
        if result.significant:
            ax.text(
                i - width / 2,
                min(result.mean + result.std, 1.0) + 0.03,
                "*",
                ha="center",
                fontsize=14,
            )
    ax.set_xticks(list(positions), [r.concept for r in report.results])
    ax.set_ylim(0, 1.12)
    ax.axhline(0.5, color="k", lw=0.5, ls=":")
    kind = "TCAV magnitude" if report.magnitude else "TCAV score"
    ax.set_ylabel(kind)
    ax.set_title(f"{kind}, target {report.target}, layer {report.layer}", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return fig


__all__ = ["plot_tcav"]
