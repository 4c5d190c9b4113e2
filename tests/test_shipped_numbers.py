"""The numbers the README and docs/results/published.md show are the shipped weights' numbers:
each bold figure equals the test accuracy or cross-entropy that `experiments.evaluate`
re-computed from those weights (`docs/results/<task>/<name>/evaluation.json`)."""

import json
import re

import pytest
from conftest import PROJECT_ROOT

from seqrnn.layout import EVALUATION_FILE, run_name

DOCS = PROJECT_ROOT / "docs" / "results"
# A shipped model's row: "| GRU 1x128 | **99.07%** |" (a classifier's test accuracy) or
# "| LSTM 1x32 | **0.0913** |" (a predictor's test nats per pixel); ", permuted" after the size
# for a model trained in permuted order.
ROW = re.compile(r"^\| (GRU|LSTM) (\d+x\d+)(, permuted)? \| \*\*([\d.]+)(%?)\*\*")


def bold_figures(page) -> list[tuple[str, str, str]]:
    """``(shipped name, figure shown, figure of the shipped weights)`` of every row of ``page``."""
    found = []
    for line in page.read_text().splitlines():
        match = ROW.match(line)
        if not match:
            continue
        cell, size, permuted, shown, percent = match.groups()
        task = "classify" if percent else "predict"
        name = run_name(task, cell.lower(), size, "permuted" if permuted else "pixel")
        evaluation = json.loads((DOCS / task / name / EVALUATION_FILE).read_text())
        weights = (
            f"{100 * evaluation['test_acc']:.2f}" if percent else f"{evaluation['test_loss']:.4f}"
        )
        found.append((name, shown, weights))
    return found


@pytest.mark.parametrize("page", ["README.md", "docs/results/published.md"])
def test_every_bold_figure_is_what_the_shipped_weights_give(page):
    figures = bold_figures(PROJECT_ROOT / page)
    assert figures, f"no shipped model's row in {page}"
    for name, shown, weights in figures:
        assert shown == weights, f"{page}: {name} shows {shown}, its weights give {weights}"


def test_the_readme_shows_every_shipped_pixel_order_model():
    names = {name for name, _, _ in bold_figures(PROJECT_ROOT / "README.md")}
    shipped = {p.parent.name for p in DOCS.glob(f"*/*/{EVALUATION_FILE}")}
    assert {n for n in shipped if n.count("-") == 2} <= names
