"""A1111's `modules.scripts`: the Script base class, AlwaysVisible, basedir() and the tab runners."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from webui import compat
from webui.extensions.scripts import (  # noqa: F401
    AlwaysVisible, OnComponent, PostprocessBatchListArgs, PostprocessImageArgs, PostSampleArgs, Script,
    ScriptRunner, basedir,
)

from . import script_callbacks  # noqa: F401  (extensions use scripts.script_callbacks)

current_basedir = basedir
scripts_postproc = None


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent, self.nmask, self.init_latent = current_latent, nmask, init_latent
        self.mask, self.blended_latent, self.denoiser, self.sigma = mask, blended_latent, denoiser, sigma
        self.is_final_blend = denoiser is None


class PostprocessMaskOverlayArgs:
    def __init__(self, index, mask_for_overlay, overlay_image):
        self.index, self.mask_for_overlay, self.overlay_image = index, mask_for_overlay, overlay_image


class ScriptFile(NamedTuple):
    basedir: str
    filename: str
    path: str


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """A1111's listing: the files ending in `extension` in the `scriptdirname` folder of every active
    extension (built-in ones first), sorted by name within each."""
    found = []
    for ext in compat.state().extensions if include_extensions else []:
        folder = Path(ext.path) / scriptdirname
        if getattr(ext, "active", True) and folder.is_dir():
            found += [ScriptFile(str(ext.path), path.name, str(path))
                      for path in sorted(folder.iterdir()) if path.is_file() and path.name.endswith(extension)]
    return found


def __getattr__(name):
    """scripts_txt2img / scripts_img2img: the bound state's runners (built on first use)."""
    if name.startswith("__"):
        raise AttributeError(name)
    if name in ("scripts_txt2img", "scripts_img2img"):
        from webui.extensions.processing import runner_for

        return runner_for(compat.state(), name.removeprefix("scripts_"))
    if name == "scripts_data":
        return [(c.cls, str(c.path), str(c.basedir), None) for c in compat.state().scripts.classes]
    raise compat.missing(__name__, name)
