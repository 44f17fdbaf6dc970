import numpy as np

from lab import plotting


def test_median_band_and_theory_and_save(tmp_path):
    fig, ax = plotting.figure()
    x = np.arange(5.0)
    vals = np.stack([x, x + 1, x + 2, x + 3])  # 4 seeds
    line = plotting.median_band(ax, x, vals, label="runs")
    np.testing.assert_allclose(line.get_ydata(), x + 1.5)
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == np.percentile(vals, 25, axis=0).min()
    t = plotting.theory(ax, 2.0, label="2/lambda")
    assert t.get_linestyle() == "--"
    png, svg = plotting.save(fig, tmp_path / "sub", "study_fig1")
    assert png.name == "study_fig1.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert svg.read_text().lstrip().startswith("<?xml")


def test_palette_is_okabe_ito():
    assert plotting.PALETTE[0] == "#0072B2" and len(set(plotting.PALETTE)) == 8
    fig, axes = plotting.figure(3)
    assert len(axes) == 3


def test_the_same_figure_saves_to_the_same_bytes(tmp_path):
    files = []
    for out in ("a", "b"):   # drawn twice, as two runs of a study would
        fig, ax = plotting.figure()
        plotting.median_band(ax, np.arange(4.0), np.ones((3, 4)), label="runs")
        ax.legend()
        files.append(plotting.save(fig, tmp_path / out, "same"))
    (png_a, svg_a), (png_b, svg_b) = files
    assert png_a.read_bytes() == png_b.read_bytes()
    assert svg_a.read_bytes() == svg_b.read_bytes() and b"<dc:date>" not in svg_a.read_bytes()
