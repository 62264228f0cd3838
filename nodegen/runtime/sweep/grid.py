"""The grid of a sweep (``--grid``, and the editor's sweeps): one image of a sweep over one, two or
three inputs: X across, Y down, one panel per Z, each row and column labelled with its value (what
other tools call an X/Y plot). One input makes a single labelled row."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from nodegen.runtime.jobs import read_record
from nodegen.runtime.sweep.plan import Axis, Job

PAD = 4
NAME = "grid.png"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _label(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def build_grid(axes: list[tuple[str, list]], cells: dict[tuple, Path | None]):
    """``axes``: ``[(key, values)]`` as (Z,) (Y,) X (slowest first); ``cells`` maps a tuple of
    values (same order) to the image file (None: the job failed). Returns a PIL image."""
    from PIL import Image, ImageDraw

    if len(axes) not in (1, 2, 3):
        raise ValueError(f"a grid needs one, two or three swept inputs, this sweep has {len(axes)}")
    if len(axes) == 1:
        axes = [("", [None]), *axes]
        cells = {(None, *k): v for k, v in cells.items()}
    if len(axes) == 2:
        axes = [("", [None]), *axes]
        cells = {(None, *k): v for k, v in cells.items()}
    (zkey, zs), (ykey, ys), (xkey, xs) = axes
    first = next((p for p in cells.values() if p is not None), None)
    if first is None:
        raise ValueError("no job of the sweep produced an image")
    with Image.open(first) as im:
        cw, ch = im.size
    font = _font(max(10, min(24, cw // 10)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(t: str) -> tuple[int, int]:
        box = measure.textbbox((0, 0), t, font=font)
        return int(box[2] - box[0]), int(box[3] - box[1])

    left = (max(text_size(f"{ykey}={_label(y)}")[0] for y in ys) + 2 * PAD) if ykey else PAD
    top = max(text_size(f"{xkey}={_label(x)}")[1] for x in xs) + 2 * PAD
    # a column is as wide as its widest label, so labels of small images do not run together
    colw = max(cw, max(text_size(f"{xkey}={_label(x)}")[0] for x in xs) + PAD)
    title = (text_size(f"{zkey}=x")[1] + 2 * PAD) if zkey else 0
    pw, ph = left + len(xs) * (colw + PAD), title + top + len(ys) * (ch + PAD)
    if zkey:
        pw = max(pw, left + max(text_size(f"{zkey}={_label(z)}")[0] for z in zs) + 2 * PAD)
    sheet = Image.new("RGB", (pw * len(zs), ph), "white")
    draw = ImageDraw.Draw(sheet)
    for zi, z in enumerate(zs):
        ox = zi * pw
        if zkey:
            draw.text((ox + left, PAD), f"{zkey}={_label(z)}", fill="black", font=font)
        for xi, x in enumerate(xs):
            draw.text((ox + left + xi * (colw + PAD), title + PAD), f"{xkey}={_label(x)}", fill="black", font=font)
        for yi, y in enumerate(ys):
            oy = title + top + yi * (ch + PAD)
            if ykey:
                draw.text((ox + PAD, oy + ch // 2), f"{ykey}={_label(y)}", fill="black", font=font)
            for xi, x in enumerate(xs):
                path = cells.get((z, y, x))
                box = (ox + left + xi * (colw + PAD), oy)
                if path is None:
                    draw.rectangle([box, (box[0] + cw - 1, box[1] + ch - 1)], outline="red")
                    continue
                with Image.open(path) as im:
                    sheet.paste(im.convert("RGB").resize((cw, ch)), box)
    return sheet


def save_atomic(img, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def draw(out_dir: Path, axes: list[Axis], jobs: list[Job]) -> Path:
    """Draw ``out_dir/grid.png`` from the published job folders of ``jobs`` (the first image of
    each; a job without one is an outlined empty cell). Raises ValueError when no job made an
    image or the sweep has more than three inputs."""
    ordered = sorted(axes, key=lambda a: a.position)
    cells = {}
    for job in jobs:
        rec = read_record(out_dir / job.folder)
        images = [n for n in (rec.files if rec and rec.status == "done" else []) if n.lower().endswith(".png")]
        key = tuple(job.values[a.key] for a in ordered)
        cells[key] = (out_dir / job.folder / images[0]) if images else None
    img = build_grid([(a.key, list(dict.fromkeys(a.values))) for a in ordered], cells)
    return save_atomic(img, out_dir / NAME)
