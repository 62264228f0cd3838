"""``nodegen rank FOLDER --prompt TEXT``: rank a sweep's pictures by how well a CLIP says they match.

Every picture of the sweep in FOLDER (its ``sweep.jsonl``) is scored against the prompt (the CLIP
score: 100 x cosine similarity) with a CLIP from the ``clip`` model folder, the built-in demo CLIP
by default. The whole ranking, best first, is written atomically to ``FOLDER/ranking.jsonl``: a
first line ``{"event": "ranking", "prompt", "clip", "crop", "images", "created"}``, then one line per
picture ``{"rank", "score", "job", "values", "file"}`` (file relative to FOLDER). The best ``--top``
are printed (all by default), or every line as JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from nodegen.cli import EXIT_OK, UsageError
from nodegen.cli.common import set_threads

RANKING = "ranking.jsonl"
DEMO_CLIP = "nodegen-demo-clip.safetensors"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rank", help="rank a sweep's pictures by how well they match a prompt (CLIP score)",
        description="Score every picture of a sweep output folder against a prompt with a CLIP, write "
                    f"FOLDER/{RANKING} (score, values, file; best first) and print the best.")
    p.add_argument("folder", help="a sweep output folder (holding sweep.jsonl)")
    p.add_argument("--prompt", required=True, help="the text the pictures should match")
    p.add_argument("--top", type=int, default=0, metavar="K", help="print only the best K (default: all)")
    p.add_argument("--clip", default=DEMO_CLIP, metavar="NAME",
                   help=f"a CLIP in the clip model folder, or a path (default: the built-in {DEMO_CLIP})")
    p.add_argument("--crop", default="center", choices=["center", "none"],
                   help="center: resize the short side and crop the middle; none: squash to a square")
    p.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="a models root (with clip/); repeatable; also NODEGEN_MODELS and the config file")
    p.add_argument("--device", default="cpu", help="compute device (default: cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    p.add_argument("--json", action="store_true", help="print the ranking's JSON lines")
    p.add_argument("--debug", action="store_true", help="print full tracebacks")
    p.set_defaults(func=cmd_rank)


def cmd_rank(args) -> int:
    from nodegen.formats.sweep_results import SweepFolderError, read_sweep_images

    if args.top < 0:
        raise UsageError("--top must be 0 (all) or more")
    if not args.prompt.strip():
        raise UsageError("--prompt is empty")
    folder = Path(args.folder)
    try:
        entries = read_sweep_images(folder)
    except SweepFolderError as e:
        raise UsageError(str(e)) from e
    if not entries:
        raise UsageError(f"{folder}: the sweep has no finished job with a picture yet")
    set_threads(args.threads)
    clip = _load_clip(args.clip, args.models)
    scores = [_score(clip, folder / e.file, args.prompt.strip(), args.crop, args.device) for e in entries]
    order = sorted(range(len(entries)), key=lambda i: (-scores[i], i))
    lines = [{"event": "ranking", "prompt": args.prompt.strip(), "clip": args.clip, "crop": args.crop,
              "images": len(entries), "created": time.time()}]
    lines += [{"rank": r + 1, "score": round(scores[i], 4), "job": entries[i].job, "values": entries[i].values,
               "file": entries[i].file} for r, i in enumerate(order)]
    _write(folder / RANKING, lines)
    _print(lines, args.top, args.json)
    return EXIT_OK


def _load_clip(name: str, models: list[str]):
    from nodegen.clip.load import load_clip
    from nodegen.models.paths import ModelPaths

    paths = ModelPaths(models)
    path = paths.resolve("clip", name)
    if path is None:
        raise UsageError(f"--clip {name!r} was not found among the clip models ({paths.describe('clip')})")
    try:
        return load_clip(path)
    except ValueError as e:
        raise UsageError(f"--clip {name!r}: {e}") from e


def _score(clip, path: Path, prompt: str, crop: str, device: str) -> float:
    from PIL import Image

    from nodegen.clip.score import clip_scores
    from nodegen.image.convert import pil_to_image

    try:
        with Image.open(path) as img:
            image = pil_to_image(img)
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e})") from e
    return float(clip_scores(clip, image, [prompt], crop=crop, device=device)[0, 0])


def _write(path: Path, lines: list[dict]) -> None:
    from nodegen.kernel.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(line, default=str) + "\n" for line in lines))


def _print(lines: list[dict], top: int, as_json: bool) -> None:
    rows = lines[1:][: top or None]
    if as_json:
        for line in [lines[0], *rows]:
            print(json.dumps(line, default=str))
        return
    head = lines[0]
    print(f"{head['images']} picture(s) ranked for {head['prompt']!r} by {head['clip']}:")
    for row in rows:
        values = ", ".join(f"{k}={v}" for k, v in row["values"].items())
        print(f"{row['rank']:>4}. {row['score']:7.2f}  {row['file']}  {values}")
    sys.stdout.flush()
