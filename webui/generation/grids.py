"""Image grids and their labels, pure PIL: what A1111's `modules.images.image_grid`,
`draw_grid_annotations` and `draw_prompt_matrix` do for X/Y/Z plot and Prompt matrix.

Labels go in a white margin: one annotation block above each column, one left of each row.
An inactive annotation (a prompt-matrix part that is off in that cell) is drawn grey and
struck through, so the grid reads like A1111's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

ACTIVE_COLOR = (0, 0, 0)
INACTIVE_COLOR = (153, 153, 153)


@dataclass
class GridAnnotation:
    text: str = ""
    is_active: bool = True


def grid_rows(count: int, batch_size: int = 1, n_rows: int = -1) -> int:
    """How many rows a grid of `count` images gets, by A1111's "Grid row count" setting:
    a positive value is used as is, 0 means one row per batch, -1 picks the largest row
    count up to the square root that divides the images evenly."""
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = batch_size
    else:
        rows = max(int(math.sqrt(count)), 1)
        while count % rows:
            rows -= 1
    return max(min(rows, count), 1)


def image_grid(images: list[Image.Image], rows: int | None = None, cols: int | None = None,
               background: str = "black") -> Image.Image:
    """The images left to right, top to bottom, each at the top left of a cell as large as the
    largest image (they differ when a plot varies the size)."""
    if not images:
        raise ValueError("a grid needs at least one image")
    if rows is None and cols is None:
        rows = grid_rows(len(images))
    if cols is None:
        cols = math.ceil(len(images) / rows)
    rows = math.ceil(len(images) / cols)
    width, height = max(image.width for image in images), max(image.height for image in images)
    grid = Image.new("RGB", (cols * width, rows * height), background)
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), (index % cols * width, index // cols * height))
    return grid


def _font(size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)  # A1111's default grid font
    except OSError:
        return ImageFont.load_default(size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> list[str]:
    """Lines of `text` no wider than `max_width` (a single long word stays whole)."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > max_width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _block(draw, annotations: list[GridAnnotation], font, max_width: int) -> list[tuple[str, bool]]:
    return [(line, a.is_active) for a in annotations for line in _wrap(draw, a.text, font, max_width)]


def draw_grid_annotations(grid: Image.Image, cell_width: int, cell_height: int,
                          hor_texts: list[list[GridAnnotation]], ver_texts: list[list[GridAnnotation]],
                          margin: int = 0) -> Image.Image:
    """`grid` (cols x rows cells of cell_width x cell_height) with labels: `hor_texts[c]` above
    column c, `ver_texts[r]` left of row r, and `margin` pixels between the cells."""
    cols, rows = max(len(hor_texts), 1), max(len(ver_texts), 1)
    font_size = max((cell_width + cell_height) // 25, 8)
    line_gap = font_size // 2
    font = _font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = font_size + line_gap
    has_ver = any(a.text for texts in ver_texts for a in texts)
    has_hor = any(a.text for texts in hor_texts for a in texts)
    pad_left = cell_width * 3 // 4 if has_ver else 0
    hor_blocks = [_block(measure, texts, font, cell_width) for texts in hor_texts]
    ver_blocks = [_block(measure, texts, font, max(pad_left - 2 * line_gap, 1)) for texts in ver_texts]
    pad_top = (max(len(b) for b in hor_blocks) * line_height + 2 * line_gap) if has_hor else 0

    result = Image.new("RGB", (pad_left + grid.width + margin * (cols - 1), pad_top + grid.height + margin * (rows - 1)),
                       "white")
    for row in range(rows):
        for col in range(cols):
            cell = grid.crop((col * cell_width, row * cell_height, (col + 1) * cell_width, (row + 1) * cell_height))
            result.paste(cell, (pad_left + col * (cell_width + margin), pad_top + row * (cell_height + margin)))

    draw = ImageDraw.Draw(result)
    for col, block in enumerate(hor_blocks):
        center = pad_left + col * (cell_width + margin) + cell_width / 2
        top = pad_top / 2 - len(block) * line_height / 2
        _draw_lines(draw, block, font, center, top, line_height)
    for row, block in enumerate(ver_blocks):
        center = pad_left / 2
        top = pad_top + row * (cell_height + margin) + cell_height / 2 - len(block) * line_height / 2
        _draw_lines(draw, block, font, center, top, line_height)
    return result


def _draw_lines(draw: ImageDraw.ImageDraw, block: list[tuple[str, bool]], font, center: float, top: float,
                line_height: int) -> None:
    for index, (line, active) in enumerate(block):
        y = top + index * line_height
        color = ACTIVE_COLOR if active else INACTIVE_COLOR
        draw.text((center, y), line, font=font, fill=color, anchor="mt")
        if not active:
            width = draw.textlength(line, font=font)
            middle = y + font.size / 2
            draw.line((center - width / 2, middle, center + width / 2, middle), fill=color, width=max(font.size // 10, 1))


def draw_prompt_matrix(grid: Image.Image, cell_width: int, cell_height: int, all_prompts: list[str],
                       margin: int = 0) -> Image.Image:
    """Prompt matrix labels: the optional parts (all_prompts[1:]) split between the top (the
    first half) and the left (the rest); in each cell the parts that are on are active."""
    parts = all_prompts[1:]
    boundary = math.ceil(len(parts) / 2)
    top, left = parts[:boundary], parts[boundary:]
    hor_texts = [[GridAnnotation(text, bool(pos & (1 << i))) for i, text in enumerate(top)] for pos in range(1 << len(top))]
    ver_texts = [[GridAnnotation(text, bool(pos & (1 << i))) for i, text in enumerate(left)] for pos in range(1 << len(left))]
    return draw_grid_annotations(grid, cell_width, cell_height, hor_texts, ver_texts, margin)
