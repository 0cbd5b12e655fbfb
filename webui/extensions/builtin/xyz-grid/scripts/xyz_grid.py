"""X/Y/Z plot: one image per combination of up to three parameters' values, in a grid with
the values written along its axes (A1111's "X/Y/Z plot" script, same arguments).

Written on the A1111 script API alone (`modules.*`), as any extension would be.

Values: comma separated (CSV quoting for values with commas, as Prompt S/R needs), and for
numbers ranges: "1-5" (step 1), "1-5 (+2)" (step 2), "1-3 [5]" (5 values evenly from 1 to 3).
"""

import copy
import csv
import io
import itertools
import random
import re
from dataclasses import dataclass
from typing import Callable

import gradio as gr
from PIL import Image

from modules import images, processing, scripts, sd_models, sd_samplers, shared
from modules.errors import InvalidInput  # ours: a value the user must change (the API answers 400)
from modules.processing import Processed, process_images
from modules.ui_components import ToolButton

RANGE = re.compile(r"^\s*([+-]?\s*\d+(?:\.\d*)?)\s*-\s*([+-]?\s*\d+(?:\.\d*)?)"
                   r"\s*(?:\(\s*([+-]\s*\d+(?:\.\d*)?)\s*\)|\[\s*(\d+)\s*\])?\s*$")
SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
DEFAULT_MOST_IMAGES = 800  # when p carries no server limit (p.limits, --max-images): A1111's UI maximum
FILL_SYMBOL = "\u21ca"  # ⇊, the "fill with all choices" button (a text font symbol: no emoji font needed)


@dataclass
class Axis:
    label: str
    kind: type  # int, float or str: how each value is read
    apply: Callable  # (p, value, all values)
    label_value: bool = True  # "Steps: 20" rather than "20"
    choices: Callable | None = None  # the values a dropdown offers
    confirm: Callable | None = None  # (p, values): raise on a bad value before generating
    cost: int = 0  # higher: worth iterating in the outermost loop (checkpoint switches)
    txt2img_only: bool = False

    def format(self, value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            value = round(value, 8)
        return f"{self.label}: {value}" if self.label_value else str(value)


def set_field(name):
    def apply(p, value, values):
        setattr(p, name, value)
    return apply


def set_option(key):
    def apply(p, value, values):
        p.override_settings[key] = value
    return apply


def apply_prompt_sr(p, value, values):
    search = values[0]
    if search not in p.prompt and search not in p.negative_prompt:
        raise InvalidInput(f"Prompt S/R did not find {search} in prompt or negative prompt.")
    p.prompt = p.prompt.replace(search, value)
    p.negative_prompt = p.negative_prompt.replace(search, value)


def apply_size(p, value, values):
    match = SIZE.match(value)
    if not match:
        raise InvalidInput(f"Size: {value!r} is not WIDTHxHEIGHT")
    p.width, p.height = int(match[1]), int(match[2])


def sampler_names() -> list[str]:
    return [sampler.name for sampler in sd_samplers.all_samplers]


def scheduler_labels() -> list[str]:
    from modules import sd_schedulers
    return [scheduler.label for scheduler in sd_schedulers.schedulers]


def checkpoint_names() -> list[str]:
    return sorted(info.name for info in sd_models.checkpoints_list.values())


def confirm_choices(choices):
    def confirm(p, values):
        known = {name.lower() for name in choices()}
        for value in values:
            if value.lower() not in known:
                raise InvalidInput(f"Unknown value: {value} (choose from {', '.join(choices())})")
    return confirm


def confirm_range(low, high):
    def confirm(p, values):
        for value in values:
            if not low <= value <= high:
                raise InvalidInput(f"{value} is out of range: values must be between {low} and {high}")
    return confirm


def confirm_checkpoints(p, values):
    for value in values:
        if sd_models.get_closet_checkpoint_match(value) is None:
            raise InvalidInput(f"Unknown checkpoint: {value}")


def apply_checkpoint(p, value, values):
    p.override_settings["sd_model_checkpoint"] = sd_models.get_closet_checkpoint_match(value).name


AXES = [
    Axis("Nothing", str, lambda p, value, values: None, label_value=False),
    Axis("Seed", int, set_field("seed")),
    Axis("Var. seed", int, set_field("subseed")),
    Axis("Var. strength", float, set_field("subseed_strength")),
    Axis("Steps", int, set_field("steps")),
    Axis("Hires steps", int, set_field("hr_second_pass_steps"), txt2img_only=True),
    Axis("CFG Scale", float, set_field("cfg_scale")),
    Axis("Prompt S/R", str, apply_prompt_sr, label_value=False),
    Axis("Sampler", str, set_field("sampler_name"), label_value=False, choices=sampler_names,
         confirm=confirm_choices(sampler_names)),
    Axis("Checkpoint name", str, apply_checkpoint, label_value=False, choices=checkpoint_names,
         confirm=confirm_checkpoints, cost=1),
    Axis("Schedule type", str, set_field("scheduler"), choices=scheduler_labels,
         confirm=confirm_choices(scheduler_labels)),
    Axis("Clip skip", int, set_option("CLIP_stop_at_last_layers"), confirm=confirm_range(1, 12)),
    Axis("Denoising", float, set_field("denoising_strength")),
    Axis("Size", str, apply_size, label_value=False),
]


def split_values(text: str) -> list[str]:
    """Comma separated values, CSV quoting allowed ("a, b", c)."""
    if not isinstance(text, (str, type(None))):
        raise InvalidInput(f"axis values must be text, not {type(text).__name__}")
    rows = csv.reader(io.StringIO(text or ""), skipinitialspace=True)
    return [value.strip() for value in itertools.chain.from_iterable(rows) if value.strip()]


def expand_range(text: str, kind: type, most: int = DEFAULT_MOST_IMAGES) -> list:
    """One value, or the values of a range: "1-5", "1-5 (+2)", "1-3 [5]"; at most `most` of them (each value is
    at least one image: the count is checked before the values are made)."""
    match = RANGE.match(text)
    if not match:
        try:
            return [kind(text)]
        except ValueError:
            raise InvalidInput(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None
    start, end = (float(match[i].replace(" ", "")) for i in (1, 2))
    if match[4]:
        count = int(match[4])
        if count > most:
            raise InvalidInput(f"{text}: {count} values; at most {most} images are allowed per request")
        points = [start + (end - start) * i / (count - 1) for i in range(count)] if count > 1 else [start]
    else:
        step = float(match[3].replace(" ", "")) if match[3] else 1.0
        if step == 0:
            raise InvalidInput(f"{text}: a range's step cannot be 0")
        if (end - start) / step + 1 > most:
            raise InvalidInput(f"{text}: {int((end - start) / step) + 1} values; at most {most} images are allowed "
                               f"per request")
        points, value = [], start
        while (value <= end + 1e-9) if step > 0 else (value >= end - 1e-9):
            points.append(value)
            value = start + step * len(points)
    return [int(v) for v in points] if kind is int else [round(v, 8) for v in points]


def axis_values(axis: Axis, text: str, chosen: list, use_text: bool, most: int = DEFAULT_MOST_IMAGES) -> list:
    if axis.label == "Nothing":
        return [None]
    if axis.choices is not None and not use_text and chosen:  # else the text (API callers often send text)
        if not isinstance(chosen, list) or not all(isinstance(value, str) for value in chosen):
            raise InvalidInput(f"{axis.label}: the chosen values must be a list of names")
        values = list(chosen)
    elif axis.kind is str:
        values = split_values(text)
    else:
        try:
            values = [v for part in split_values(text) for v in expand_range(part, axis.kind, most)]
        except InvalidInput as error:
            raise InvalidInput(f"{axis.label}: {error}") from None
    if not values:
        raise InvalidInput(f"{axis.label}: no values given")
    if len(values) > most:
        raise InvalidInput(f"{axis.label}: {len(values)} values; at most {most} images are allowed per request")
    return values


def most_images(p) -> int:
    """The images one request may make: the server's limit (--max-images) that our p carries."""
    return getattr(getattr(p, "limits", None), "images", None) or DEFAULT_MOST_IMAGES


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def axes(self, is_img2img: bool) -> list[Axis]:
        return [axis for axis in AXES if not (is_img2img and axis.txt2img_only)]

    def ui(self, is_img2img):
        labels = [axis.label for axis in self.axes(is_img2img)]
        rows = []
        for name, default in (("x", 1), ("y", 0), ("z", 0)):
            with gr.Row():
                kind = gr.Dropdown(labels, value=labels[default], type="index", label=f"{name.upper()} type",
                                   elem_id=self.elem_id(f"{name}_type"))
                values = gr.Textbox(label=f"{name.upper()} values", lines=1, elem_id=self.elem_id(f"{name}_values"))
                dropdown = gr.Dropdown([], value=[], multiselect=True, visible=False, label=f"{name.upper()} values",
                                       elem_id=self.elem_id(f"{name}_values_dropdown"))
                fill = ToolButton(value=FILL_SYMBOL, elem_id=self.elem_id(f"{name}_fill"), visible=False)
            rows.append((kind, values, dropdown, fill))
        with gr.Row():
            draw_legend = gr.Checkbox(label="Draw legend", value=True, elem_id=self.elem_id("draw_legend"))
            no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False, elem_id=self.elem_id("no_fixed_seeds"))
            vary = [gr.Checkbox(label=f"Vary seeds for {n}", value=False, elem_id=self.elem_id(f"vary_seeds_{n.lower()}"))
                    for n in "XYZ"]
        with gr.Row():
            include_lone_images = gr.Checkbox(label="Include Sub Images", value=False,
                                              elem_id=self.elem_id("include_lone_images"))
            include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False, elem_id=self.elem_id("include_sub_grids"))
            csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns", value=False,
                                   elem_id=self.elem_id("csv_mode"))
        margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                elem_id=self.elem_id("margin_size"))

        for kind, values, dropdown, fill in rows:
            kind.change(self.show_values, [kind, csv_mode], [values, dropdown, fill])
            csv_mode.change(self.show_values, [kind, csv_mode], [values, dropdown, fill])
            fill.click(self.fill_values, [kind, csv_mode], [values, dropdown])

        (x, xv, xd, _), (y, yv, yd, _), (z, zv, zd, _) = rows
        return [x, xv, xd, y, yv, yd, z, zv, zd, draw_legend, include_lone_images, include_sub_grids,
                no_fixed_seeds, *vary, margin_size, csv_mode]

    def show_values(self, index, csv_mode):
        axis = self.axes(self.is_img2img)[index or 0]
        dropdown = axis.choices is not None and not csv_mode
        choices = axis.choices() if dropdown else []
        return (gr.update(visible=not dropdown), gr.update(visible=dropdown, choices=choices, value=[]),
                gr.update(visible=axis.choices is not None))

    def fill_values(self, index, csv_mode):
        axis = self.axes(self.is_img2img)[index or 0]
        if axis.choices is None:
            return gr.update(), gr.update()
        choices = axis.choices()
        if csv_mode:
            return gr.update(value=", ".join(f'"{c}"' if "," in c else c for c in choices)), gr.update()
        return gr.update(), gr.update(value=choices)

    def run(self, p, x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
            z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x,
            vary_seeds_y, vary_seeds_z, margin_size, csv_mode=False):
        current = self.axes(self.is_img2img)
        axes = [find_axis(current, t) for t in (x_type, y_type, z_type)]
        used = [axis.label for axis in axes if axis.label != "Nothing"]
        if len(used) != len(set(used)):
            raise InvalidInput("Each axis must have a different type")
        if isinstance(margin_size, bool) or not isinstance(margin_size, (int, float)) or not 0 <= margin_size <= 500:
            raise InvalidInput(f"Grid margins must be a number of pixels from 0 to 500, not {margin_size!r}")
        most = most_images(p)
        texts, chosen = (x_values, y_values, z_values), (x_values_dropdown, y_values_dropdown, z_values_dropdown)
        values = [axis_values(axis, text, pick, csv_mode, most) for axis, text, pick in zip(axes, texts, chosen)]
        images_wanted = len(values[0]) * len(values[1]) * len(values[2]) * p.n_iter * p.batch_size
        if images_wanted > most:
            raise InvalidInput(f"The plot would make {images_wanted} images; at most {most} are allowed per request")
        for axis, vals in zip(axes, values):
            if axis.confirm is not None and vals != [None]:
                axis.confirm(p, vals)
        if not no_fixed_seeds:
            processing.fix_seed(p)
            values = [fixed_seeds(axis, vals) for axis, vals in zip(axes, values)]

        # The infotext keeps what the user typed ("1-5"), as A1111 does; dropdowns give their choices.
        raw = [text if axis.choices is None or csv_mode or not pick else ", ".join(map(str, pick))
               for axis, text, pick in zip(axes, texts, chosen)]
        plot = Plot(p, axes, values, raw, (vary_seeds_x, vary_seeds_y, vary_seeds_z), show_fixed=not no_fixed_seeds)
        plot.check()
        plot.generate()
        return plot.result(draw_legend, include_lone_images, include_sub_grids, int(margin_size))


def find_axis(axes: list[Axis], chosen) -> Axis:
    """An axis by dropdown index or, for API callers, by label."""
    if isinstance(chosen, str) and not chosen.strip().lstrip("-").isdigit():
        for axis in axes:
            if axis.label.lower() == chosen.strip().lower():
                return axis
        raise InvalidInput(f"Unknown axis type: {chosen}")
    if not isinstance(chosen, (int, str, type(None))) or isinstance(chosen, bool):
        raise InvalidInput(f"Axis type must be an index or a name, not {chosen!r}")
    index = int(chosen or 0)
    if not 0 <= index < len(axes):
        raise InvalidInput(f"Axis type index {index} is out of range")
    return axes[index]


def fixed_seeds(axis: Axis, values: list) -> list:
    """A -1 (or empty) seed on a seed axis becomes one random seed, the same in every cell."""
    if axis.label not in ("Seed", "Var. seed"):
        return values
    return [random.randrange(4294967294) if v in (None, "", -1) else v for v in values]


class Plot:
    """The cells of one X/Y/Z plot: generating them and assembling the grids."""

    def __init__(self, p, axes, values, raw, vary, show_fixed):
        self.p, self.axes, self.values, self.raw, self.vary, self.show_fixed = p, axes, values, raw, vary, show_fixed
        self.cells: dict[tuple[int, int, int], Processed] = {}

    def positions(self):
        return itertools.product(*(range(len(values)) for values in self.values))

    def check(self) -> None:
        """Every cell's parameters, before the first image: a bad value (Steps 5000, a size too big) is refused
        at once rather than after the cells before it ran. Our p checks itself (to_params); A1111's has no check."""
        for position in self.positions():
            cell = self.cell_p(*position)
            if hasattr(cell, "to_params"):
                cell.to_params().validate()

    def generate(self) -> None:
        xs, ys, zs = self.values
        shared.state.job_count = len(xs) * len(ys) * len(zs) * self.p.n_iter
        # The costliest axis (checkpoint) changes slowest: fewer model switches.
        order = sorted(range(3), key=lambda i: -self.axes[i].cost) if any(a.cost for a in self.axes) else [2, 1, 0]
        for indices in itertools.product(*(range(len(self.values[axis])) for axis in order)):
            if shared.state.interrupted:
                break
            position = [0, 0, 0]
            for axis, index in zip(order, indices):
                position[axis] = index
            self.cells[tuple(position)] = process_images(self.cell_p(*position))

    def cell_p(self, ix, iy, iz):
        pc = copy.copy(self.p)
        pc.override_settings = dict(self.p.override_settings or {})
        pc.extra_generation_params = dict(self.p.extra_generation_params or {})
        pc.styles = list(self.p.styles or [])
        for axis, values, index in zip(self.axes, self.values, (ix, iy, iz)):
            axis.apply(pc, values[index], values)
        xs, ys, _ = self.values
        x_dim, y_dim = (len(xs) if self.vary[0] else 1), (len(ys) if self.vary[1] else 1)
        offset = (ix if self.vary[0] else 0) + (iy * x_dim if self.vary[1] else 0) + (iz * x_dim * y_dim if self.vary[2] else 0)
        if offset and pc.seed != -1:
            pc.seed = int(pc.seed) + offset
        if (ix, iy, iz) == (0, 0, 0):  # the grid's infotext is the first cell's
            for name, axis, values, raw in zip("XYZ", self.axes, self.values, self.raw):
                if axis.label != "Nothing":
                    pc.extra_generation_params[f"{name} Type"] = axis.label
                    pc.extra_generation_params[f"{name} Values"] = raw
                    if self.show_fixed and axis.label in ("Seed", "Var. seed"):
                        pc.extra_generation_params[f"Fixed {name} Values"] = ", ".join(str(v) for v in values)
        return pc

    def cell_image(self, position):
        """The cell's image; a cell with several (batch) gets their grid; None if it never ran."""
        processed = self.cells.get(position)
        shown = list(processed.images[processed.index_of_first_image:]) if processed and processed.images else []
        if not shown:
            return None
        return shown[0] if len(shown) == 1 else images.image_grid(shown)

    @staticmethod
    def labels(axis: Axis, values: list) -> list:
        """One annotation per value; none for "Nothing", so it takes no room."""
        return [[images.GridAnnotation(axis.format(v))] if axis.label != "Nothing" else [] for v in values]

    def result(self, draw_legend: bool, include_lone_images: bool, include_sub_grids: bool, margin: int) -> Processed:
        xs, ys, zs = self.values
        if not self.cells:
            return Processed(self.p, [], self.p.seed, "")
        first = self.cells.get((0, 0, 0)) or next(iter(self.cells.values()))
        cells = {pos: self.cell_image(pos) for pos in itertools.product(range(len(xs)), range(len(ys)), range(len(zs)))}
        done = [image for image in cells.values() if image is not None]
        if not done:
            return Processed(self.p, [], self.p.seed, "")
        cell_w, cell_h = max(image.width for image in done), max(image.height for image in done)
        cells = {pos: image or Image.new("RGB", (cell_w, cell_h)) for pos, image in cells.items()}  # interrupted
        labels_x, labels_y, labels_z = (self.labels(axis, values) for axis, values in zip(self.axes, self.values))

        sub_grids, sub_infos = [], []
        for iz in range(len(zs)):
            grid = images.image_grid([cells[(ix, iy, iz)] for iy in range(len(ys)) for ix in range(len(xs))], rows=len(ys))
            if draw_legend:
                grid = images.draw_grid_annotations(grid, cell_w, cell_h, labels_x, labels_y, margin)
            sub_grids.append(grid)
            sub_infos.append(infotext_of(self.cells.get((0, 0, iz)) or first))

        grids, infos = sub_grids, sub_infos
        if len(zs) > 1:
            z_grid = images.image_grid(sub_grids, rows=1)
            if draw_legend:
                z_grid = images.draw_grid_annotations(z_grid, sub_grids[0].width, sub_grids[0].height, labels_z, [[]],
                                                      margin)
            grids, infos = [z_grid, *(sub_grids if include_sub_grids else [])], [infotext_of(first)] * (
                1 + (len(sub_grids) if include_sub_grids else 0))

        all_images, infotexts = list(grids), list(infos)
        seeds = [first.seed] * len(grids)
        prompts = [first.prompt] * len(grids)
        if include_lone_images:
            for iz, iy, ix in itertools.product(range(len(zs)), range(len(ys)), range(len(xs))):
                processed = self.cells.get((ix, iy, iz))
                if processed is None:
                    continue
                start = processed.index_of_first_image
                all_images += processed.images[start:]
                infotexts += processed.infotexts[start:]
                seeds += processed.all_seeds[:len(processed.images) - start]
                prompts += processed.all_prompts[:len(processed.images) - start]
        for grid, info in zip(grids, infos):
            save_grid(self.p, grid, info, first.seed)
        return Processed(self.p, all_images, first.seed, infotexts[0], all_prompts=prompts, all_seeds=seeds,
                         infotexts=infotexts, index_of_first_image=len(grids))


def infotext_of(processed) -> str:
    start = processed.index_of_first_image
    return processed.infotexts[start] if len(processed.infotexts) > start else processed.info


def save_grid(p, grid, info: str, seed) -> None:
    if getattr(shared.opts, "grid_save", True):
        images.save_image(grid, p.outpath_grids, "xyz_grid", info=info, extension=getattr(shared.opts, "grid_format", "png"),
                          prompt=p.prompt, seed=seed, grid=True, p=p)
