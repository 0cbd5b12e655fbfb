"""A procedural data set of simple shapes with captions, deterministic from a seed.

Each scene is one shape (circle, square, triangle, star, diamond) in a named colour, size and
position over a plain background of another colour, with a caption such as
"a large red circle on the left, blue background". Parts of the caption are left out at
random, so short prompts ("a red circle") are as familiar to the model as long ones.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 50),
    "cyan": (40, 200, 220),
    "blue": (30, 60, 220),
    "purple": (130, 40, 180),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "brown": (120, 70, 30),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = {"small": 0.16, "medium": 0.26, "large": 0.38}  # radius as a fraction of the side
POSITIONS = {  # centre as fractions of the side
    "on the left": (0.28, 0.5),
    "on the right": (0.72, 0.5),
    "at the top": (0.5, 0.28),
    "at the bottom": (0.5, 0.72),
    "in the center": (0.5, 0.5),
}


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    position: str
    background: str

    def caption(self, rng: random.Random | None = None) -> str:
        """The full caption, or with `rng` one with parts left out at random."""
        keep = (lambda p: rng.random() < p) if rng else (lambda p: True)
        words = ["a"]
        if keep(0.5):
            words.append(self.size)
        words += [self.colour, self.shape]
        if keep(0.6):
            words.append(self.position)
        text = " ".join(words)
        if keep(0.6):
            text += f", {self.background} background"
        return text


def random_scene(rng: random.Random) -> Scene:
    colour = rng.choice(list(COLOURS))
    background = rng.choice([name for name in COLOURS if name != colour])
    return Scene(rng.choice(SHAPES), colour, rng.choice(list(SIZES)), rng.choice(list(POSITIONS)), background)


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """The outline of `shape` around (cx, cy); None for the circle, drawn as an ellipse."""
    if shape == "circle":
        return None
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, size: int = 128, jitter: random.Random | None = None) -> Image.Image:
    """Draw the scene, anti-aliased (drawn at 4x, then reduced); `jitter` moves it slightly."""
    big = size * 4
    image = Image.new("RGB", (big, big), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    fx, fy = POSITIONS[scene.position]
    r = SIZES[scene.size]
    if jitter:
        fx, fy = fx + jitter.uniform(-0.05, 0.05), fy + jitter.uniform(-0.05, 0.05)
        r *= jitter.uniform(0.9, 1.1)
    cx, cy, radius = fx * big, fy * big, r * big
    outline = shape_polygon(scene.shape, cx, cy, radius)
    fill = COLOURS[scene.colour]
    if outline is None:
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    else:
        draw.polygon(outline, fill=fill)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def make_dataset(count: int, seed: int = 0, size: int = 128) -> tuple[np.ndarray, list[Scene], list[str]]:
    """`count` images (uint8, N x size x size x 3), their scenes and captions, the same for the same seed."""
    rng = random.Random(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    scenes, captions = [], []
    for i in range(count):
        scene = random_scene(rng)
        images[i] = np.asarray(render(scene, size, jitter=rng))
        scenes.append(scene)
        captions.append(scene.caption(rng))
    return images, scenes, captions
