"""Measure what a shapes model draws: colour, shape, position and emphasis scores, as a table.

`python -m webui.demo.evaluate [--model FOLDER]` runs the prompts through the WebUI's own txt2img
(the same path as a user's request) and prints the figures the model card and the meaning tests
quote. The measures are plain pixel statistics over the data set's palette, so they need no
classifier and mean the same for any model trained on `webui.demo.shapes`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .shapes import COLOURS, POSITIONS, SHAPES, SIZES, shape_polygon

PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
NAMES = list(COLOURS)
SEEDS = (11, 22, 33, 44)


def colour_map(image: Image.Image) -> np.ndarray:
    """Index (into NAMES) of the nearest named colour for every pixel, as an H x W array."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.argmin(((pixels[..., None, :] - PALETTE) ** 2).sum(-1), axis=-1)


def foreground_mask(image: Image.Image) -> np.ndarray:
    """Pixels whose nearest colour is not the background's (the most common one)."""
    classes = colour_map(image)
    return classes != np.bincount(classes.ravel(), minlength=len(NAMES)).argmax()


def foreground_share(image: Image.Image, colour: str) -> float:
    """Of the foreground pixels, the share nearest `colour`."""
    classes = colour_map(image)[foreground_mask(image)]
    return float((classes == NAMES.index(colour)).mean()) if classes.size else 0.0


def redness(image: Image.Image) -> float:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return float((rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2).mean())


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """Centre of the mask as fractions of the side (x, y); the middle for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not xs.size:
        return 0.5, 0.5
    return float(xs.mean() + 0.5) / mask.shape[1], float(ys.mean() + 0.5) / mask.shape[0]


def shape_template(shape: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """The mask `shapes.render` would fill for `shape` at `centre` with `radius` (fractions of the side)."""
    image = Image.new("L", (size, size), 0)
    cx, cy, r = centre[0] * size, centre[1] * size, radius * size
    outline = shape_polygon(shape, cx, cy, r)
    draw = ImageDraw.Draw(image)
    if outline is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(outline, fill=255)
    return np.asarray(image) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def shape_ious(image: Image.Image, size_word: str) -> dict[str, float]:
    """IoU of the drawn foreground with each shape's outline, placed at the foreground's centre."""
    mask = foreground_mask(image)
    centre = centroid(mask)
    return {shape: iou(mask, shape_template(shape, centre, SIZES[size_word], mask.shape[0])) for shape in SHAPES}


SAMPLE_PROMPTS = (
    "a red circle", "a blue square", "a green triangle", "a yellow star", "a purple diamond",
    "a large orange circle on the left, white background", "a small black square at the top, pink background",
    "a (red:1.5) circle, white background", "a (red:0.6) circle, white background", "a [red:blue:0.5] square",
)


def drawer(model, steps: int, cfg_scale: float = 5.0):
    """prompt, seed -> image, through the WebUI's own txt2img at the model's 128x128."""
    from webui.generation.params import Txt2ImgParams
    from webui.generation.processing import txt2img

    def draw(prompt: str, seed: int) -> Image.Image:
        p = Txt2ImgParams(prompt=prompt, seed=seed, steps=steps, cfg_scale=cfg_scale, width=128, height=128,
                          sampler_name="DPM++ 2M", save_images=False)
        return txt2img(model, p).images[0]
    return draw


def sample_sheet(model, steps: int = 20, prompts=SAMPLE_PROMPTS, seeds=SEEDS) -> Image.Image:
    """One row per prompt, one column per seed, labelled."""
    from webui.generation.grids import GridAnnotation, draw_grid_annotations, image_grid

    draw = drawer(model, steps)
    images = [draw(prompt, seed) for prompt in prompts for seed in seeds]
    grid = image_grid(images, rows=len(prompts), cols=len(seeds))
    return draw_grid_annotations(grid, 128, 128, [[GridAnnotation(f"seed {s}")] for s in seeds],
                                 [[GridAnnotation(prompt)] for prompt in prompts])


def evaluate(model, seeds=SEEDS, steps: int = 12, cfg_scale: float = 5.0) -> dict:
    """Every score, averaged over `seeds`; see the module docstring."""
    draw = drawer(model, steps, cfg_scale)
    colour = {c: float(np.mean([foreground_share(draw(f"a {c} circle", s), c) for s in seeds])) for c in NAMES}
    shape_scores = {}
    for k, shape in enumerate(SHAPES):
        ink = ("red", "blue", "green", "yellow", "purple")[k]
        ious = [shape_ious(draw(f"a large {ink} {shape} in the center, white background", s), "large") for s in seeds]
        shape_scores[shape] = {"iou": float(np.mean([i[shape] for i in ious])),
                               "recognised": float(np.mean([max(i, key=i.get) == shape for i in ious]))}
    position = {}
    for where in POSITIONS:
        centres = [centroid(foreground_mask(draw(f"a medium blue square {where}, white background", s))) for s in seeds]
        target = np.array(POSITIONS[where])
        position[where] = float(np.mean([np.abs(np.array(c) - target).max() for c in centres]))
    emphasis = {w: float(np.mean([redness(draw(f"a (red:{w}) circle, white background", s)) for s in seeds]))
                for w in ("0", "0.6", "1", "1.5", "3")}
    return {"colour": colour, "shape": shape_scores, "position_error": position, "redness": emphasis}


def report(scores: dict) -> str:
    lines = ["colour word -> foreground share in that colour (\"a <colour> circle\")"]
    lines += [f"  {name:7s} {share:.2f}" for name, share in scores["colour"].items()]
    lines.append(f"  mean    {np.mean(list(scores['colour'].values())):.2f}")
    lines.append("shape word -> IoU with its outline, share of images whose best-fitting outline is that shape")
    lines += [f"  {name:8s} IoU {s['iou']:.2f}  recognised {s['recognised']:.2f}" for name, s in scores["shape"].items()]
    lines.append("position words -> largest centre error, fraction of the side")
    lines += [f"  {where:14s} {error:.3f}" for where, error in scores["position_error"].items()]
    lines.append("emphasis -> mean redness of \"a (red:W) circle, white background\"")
    lines += [f"  W={w}  {value:+.3f}" for w, value in scores["redness"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from webui.models.discovery import DEMO_MODEL
    from webui.models.loading import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="a diffusers folder (default: the demo model)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--cfg-scale", type=float, default=5.0)
    parser.add_argument("--samples", type=Path, help="also write a labelled sheet of sample prompts (20 steps) here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = load_checkpoint(args.model)
    if args.samples:
        sample_sheet(model).save(args.samples)
    scores = evaluate(model, steps=args.steps, cfg_scale=args.cfg_scale)
    print(report(scores))
    print(f"({time.perf_counter() - started:.0f} s; seeds {', '.join(map(str, SEEDS))}; {args.steps} steps of DPM++ 2M, "
          f"CFG {args.cfg_scale:g}, 128x128)")


if __name__ == "__main__":
    main()
