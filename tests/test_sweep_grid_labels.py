"""A sweep grid of small images (the demo model's 64 px): each column is as wide as its label, so
the labels do not run into each other."""

from __future__ import annotations

from PIL import Image, ImageDraw

from nodegen.runtime.sweep.grid import PAD, _font, build_grid


def test_column_labels_wider_than_the_images_do_not_overlap(tmp_path):
    cells = {}
    for cfg in (3, 5, 7):
        path = tmp_path / f"{cfg}.png"
        Image.new("RGB", (16, 16), "blue").save(path)
        cells[(cfg,)] = path
    grid = build_grid([("Sampler.cfg", [3, 5, 7])], cells)
    font = _font(10)  # the size build_grid picks for 16 px images
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), "Sampler.cfg=3", font=font)
    assert grid.width >= 3 * (box[2] - box[0])
    # the three cells start at least a label's width apart
    row = [grid.getpixel((x, grid.height - PAD - 8)) for x in range(grid.width)]
    starts = [x for x in range(1, len(row)) if row[x] == (0, 0, 255) and row[x - 1] != (0, 0, 255)]
    assert len(starts) == 3 and min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= box[2] - box[0]
