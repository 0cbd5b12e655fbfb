"""A1111's `modules.upscaler`: the Upscaler base class and UpscalerData entries of `shared.sd_upscalers`.

Each entry of `shared.sd_upscalers` is an `UpscalerData` (name, data_path, scale, and `scaler`, the
Upscaler that does the work); extensions call `entry.scaler.upscale(image, scale, entry.data_path)`
(ultimate-upscale does). Ours wrap the pixel upscalers of webui/generation/upscalers.py, in A1111's
order: None, Lanczos, Nearest, then the others: model files (webui/postprocessing) carry their path and scale. Latent modes are not upscalers here either: they are
`shared.latent_upscale_modes`.
"""

from __future__ import annotations

from PIL import Image

from webui import compat

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST


class Upscaler:
    """A1111's base: `upscale(img, scale, selected_model)` calls `do_upscale` until the image is at least
    `scale` times larger (a 4x model twice for 8x), then resizes to the exact size with Lanczos."""

    name = None
    model_path = None
    model_name = None
    model_url = None
    enable = True
    filter = None
    model = None
    user_path = None
    scalers: list = []
    tile = True

    def __init__(self, create_dirs=False):
        self.mod_pad_h = None
        self.tile_size = 192
        self.tile_pad = 8
        self.scale = 1
        self.scalers = []

    def do_upscale(self, img: Image.Image, selected_model):
        return img

    def upscale(self, img: Image.Image, scale, selected_model=None) -> Image.Image:
        self.scale = scale
        width, height = int(img.width * scale // 8 * 8), int(img.height * scale // 8 * 8)
        for _ in range(3):
            if img.width >= width and img.height >= height:
                break
            before = img.size
            img = self.do_upscale(img, selected_model)
            if img.size == before:  # an upscaler that cannot enlarge: Lanczos does the rest
                break
        return img.resize((width, height), resample=LANCZOS) if img.size != (width, height) else img

    def load_model(self, path: str):
        pass

    def find_models(self, ext_filter=None) -> list:
        return []


class UpscalerData:
    """One entry of `shared.sd_upscalers`."""

    def __init__(self, name: str, path: str | None, upscaler: Upscaler | None = None, scale: int = 4, model=None,
                 sd_vae=None):
        self.name = name
        self.data_path = path
        self.local_data_path = path
        self.scaler = upscaler
        self.scale = scale
        self.model = model
        self.sd_vae = sd_vae


class UpscalerNone(Upscaler):
    name = "None"

    def upscale(self, img, scale, selected_model=None):
        return img


class UpscalerLanczos(Upscaler):
    name = "Lanczos"

    def do_upscale(self, img, selected_model=None):
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=LANCZOS)


class UpscalerNearest(Upscaler):
    name = "Nearest"

    def do_upscale(self, img, selected_model=None):
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=NEAREST)


class RegisteredUpscaler(Upscaler):
    """Any other pixel upscaler of ours (generation/upscalers.py registry), seen through A1111's interface."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def do_upscale(self, img, selected_model=None):
        from webui.generation.upscalers import find_upscaler

        return find_upscaler(self.name).upscale(img, int(img.width * self.scale), int(img.height * self.scale))


BUILT_IN = {"None": UpscalerNone, "Lanczos": UpscalerLanczos, "Nearest": UpscalerNearest}


def sd_upscalers() -> list[UpscalerData]:
    """A1111's list: None, Lanczos, Nearest first, then every other registered pixel upscaler."""
    from webui.generation.upscalers import LATENT_UPSCALE_MODES, upscaler_names

    names = [name for name in upscaler_names() if name not in LATENT_UPSCALE_MODES]
    ordered = [*BUILT_IN, *(name for name in names if name not in BUILT_IN)]
    from webui.postprocessing.model_upscalers import model_upscaler_file

    entries = []
    for name in ordered:
        scaler = BUILT_IN[name]() if name in BUILT_IN else RegisteredUpscaler(name)
        file = model_upscaler_file(name)  # a model file's path and scale (ESRGAN, RealESRGAN, ... folders)
        if file is not None:
            scaler.model_path, scaler.model_name = str(file.path), file.path.stem
        entries.append(UpscalerData(name, str(file.path) if file else None, scaler,
                                    scale=file.scale if file else (4 if name not in BUILT_IN else 1)))
    return entries


__getattr__ = compat.report_missing_names(__name__)
