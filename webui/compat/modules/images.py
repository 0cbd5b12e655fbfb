"""A1111's `modules.images`: save_image (with the save callbacks), grids and their labels."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from webui import compat
from webui.extensions.callbacks import ImageGridLoopParams
from webui.extensions.hooks import ScriptHooks
from webui.generation import grids
from webui.generation import images as ours
from webui.generation.grids import GridAnnotation, draw_grid_annotations, draw_prompt_matrix  # noqa: F401
from webui.generation.filenames import apply_filename_pattern, sanitize_filename_part  # noqa: F401
from webui.generation.images import read_infotext  # noqa: F401
from webui.generation.masks import flatten as _flatten
from webui.generation.masks import resize_image  # noqa: F401  (A1111's (mode, image, width, height))

from .shared import opts

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST


def image_grid(imgs, batch_size=1, rows=None) -> Image.Image:
    """The images in a grid, rows chosen as A1111 does; on_image_grid callbacks may change it."""
    rows = rows or grids.grid_rows(len(imgs), batch_size, opts.n_rows)
    params = ImageGridLoopParams(list(imgs), math.ceil(len(imgs) / rows), rows)
    if compat.bound():
        compat.state().callbacks.run("image_grid", params)
    return grids.image_grid(params.imgs, rows=params.rows, cols=params.cols)


def get_font(fontsize: int):
    return grids._font(fontsize)


class _Saving(ScriptHooks):
    """The save callbacks for one image; with forced_filename the file gets exactly that name."""

    def __init__(self, p, forced: Path | None):
        super().__init__(p, None, compat.state().callbacks)
        self.forced = forced

    def before_image_saved(self, save) -> None:
        if self.forced is not None:
            save.filename = str(self.forced)
        super().before_image_saved(save)


def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None, short_filename=False,
               no_prompt=False, grid=False, pnginfo_section_name="parameters", p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    """Save as A1111 does: `path`/[<subfolder>/][NNNNN-]<pattern>.<ext> with `info` as the infotext;
    (file, txt file). The subfolder (settings "Save images to a subdirectory", "Save grids to a
    subdirectory", pattern `directories_filename_pattern`) as in A1111: `save_to_dirs` None means
    the setting for grids or for images, never for a `no_prompt` image."""
    extension = extension.lstrip(".")
    if save_to_dirs is None:
        save_to_dirs = bool(opts.grid_save_to_dirs) if grid else bool(opts.save_to_dirs) and not no_prompt
    if save_to_dirs:
        folder = apply_filename_pattern(opts.directories_filename_pattern or "[prompt_words]",
                                             seed=seed, prompt=prompt, image=image)
        path = Path(path) / folder.lstrip(" ").rstrip("\\ /")
    forced = Path(path) / f"{forced_filename}.{extension}" if forced_filename else None
    pattern = "" if short_filename or no_prompt else (opts.samples_filename_pattern or "[seed]")
    if no_prompt and seed is not None:
        pattern = "[seed]"
    hooks = _Saving(p, forced) if compat.bound() else None
    saved = ours.save_image(image, Path(path), seed=seed, prompt=prompt, infotext=info, pattern=pattern,
                            extension=extension, basename=basename or "", suffix=suffix,
                            existing_pnginfo={k: v for k, v in (existing_info or {}).items() if k != "parameters"},
                            save_txt=bool(opts.save_txt), hooks=hooks)
    txt = saved.with_suffix(".txt")
    return str(saved), (str(txt) if txt.exists() else None)


def save_image_with_geninfo(image, geninfo, filename, extension=None, existing_pnginfo=None, pnginfo_section_name="parameters"):
    extension = (extension or Path(filename).suffix).lstrip(".")
    Path(filename).write_bytes(ours.encode_image(image, extension, geninfo, existing_pnginfo=existing_pnginfo))


def read_info_from_image(image):
    """(infotext, other text chunks) of an image, as A1111 returns them."""
    items = {k: v for k, v in (image.info or {}).items() if isinstance(v, str) and k != "parameters"}
    return read_infotext(image), items


def flatten(img, bgcolor="#ffffff"):
    return _flatten(img)


__getattr__ = compat.report_missing_names(__name__)
