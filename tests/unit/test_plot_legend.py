"""The figure legend fits inside the figure at every default size (issue #19: the demo's
curves.png cut "DreamerV2 (paper, 200M frames)" off at both sides)."""

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from reverie.report.plot import DPI, REFERENCES, _grid, _save, figure_size


@pytest.mark.parametrize("panels", [1, 2, 3, 4, 5, 8])
def test_legend_with_the_paper_reference_lines_fits_the_figure(tmp_path, panels):
    figure, axes = _grid(panels)
    labels = ["atari_pong (3 seeds)", *(label for _, label, _ in REFERENCES)]
    for ax in axes:
        for index, label in enumerate(labels):
            ax.plot([0, 1], [index, index + 1], label=label)
    out = _save(figure, tmp_path / "curves.png")
    renderer = FigureCanvasAgg(figure).get_renderer()
    (legend,) = figure.legends
    box, page = legend.get_window_extent(renderer), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0, (box, page)
    assert len(legend.get_texts()) == len(labels)
    lowest_panel = min(ax.get_window_extent(renderer).y0 for ax in axes)
    assert box.y1 <= lowest_panel, "the legend overlaps the panels"
    assert figure.get_size_inches().tolist() == list(figure_size(panels)) and out.stat().st_size > 0
    assert round(figure.get_figwidth() * DPI) == round(figure_size(panels)[0] * DPI)
