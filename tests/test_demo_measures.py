"""The demo model's measures (webui.demo.evaluate) read the data set's own drawings correctly.

If these fail, a meaning test on the demo model would measure nothing; they need no model.
"""

from __future__ import annotations

import pytest

from webui.demo.evaluate import centroid, foreground_mask, foreground_share, redness, shape_ious
from webui.demo.shapes import COLOURS, POSITIONS, SHAPES, Scene, render


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", ["medium", "large"])
def test_each_drawn_shape_fits_its_own_outline_best(shape, size):
    for position in POSITIONS:
        ious = shape_ious(render(Scene(shape, "red", size, position, "white")), size)
        assert max(ious, key=ious.get) == shape, (position, ious)
        assert ious[shape] > 0.85, (position, ious)


@pytest.mark.parametrize("colour", [c for c in COLOURS if c != "gray"])
def test_the_shape_colour_is_the_foreground_colour(colour):
    image = render(Scene("square", colour, "large", "in the center", "gray"))
    assert foreground_share(image, colour) > 0.9
    assert foreground_share(image, "gray" if colour != "black" else "white") < 0.05


def test_the_centre_of_the_foreground_is_where_the_caption_says():
    for position, (x, y) in POSITIONS.items():
        cx, cy = centroid(foreground_mask(render(Scene("circle", "blue", "small", position, "yellow"))))
        assert abs(cx - x) < 0.02 and abs(cy - y) < 0.02, position


def test_redness_orders_red_above_other_colours():
    red = redness(render(Scene("circle", "red", "large", "in the center", "white")))
    for other in ("blue", "green", "yellow", "white"):
        assert red > redness(render(Scene("circle", other, "large", "in the center", "white"))) + 0.1

