"""SD upscale (img2img): upscale the image with an upscaler, then run img2img over overlapping tiles of the
img2img size and blend the tiles back together. A1111's script, same arguments: (info, overlap, upscaler,
scale factor); the upscaler may be given as its index in `shared.sd_upscalers` (A1111's) or by name.

Written on the A1111 script API alone (`modules.*`), as any extension would be.
"""

import math

import gradio as gr
import numpy as np
from PIL import Image

from modules import images, processing, scripts, shared
from modules.errors import InvalidInput
from modules.processing import Processed, process_images


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` pixels start so that they cover `length`, overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    count = max(count, 2)
    step = (length - tile) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def _weights(length: int, start: int, starts: list[int], tile: int) -> np.ndarray:
    """A tile's weight along one axis: rising from its start across the overlap with the tile before it,
    falling across the overlap with the tile after it, 1 elsewhere."""
    weight = np.ones(tile, dtype=np.float32)
    index = starts.index(start)
    if index > 0:
        shared_px = starts[index - 1] + tile - start
        if shared_px > 0:
            weight[:shared_px] = np.linspace(0, 1, shared_px + 2, dtype=np.float32)[1:-1]
    if index < len(starts) - 1:
        shared_px = start + tile - starts[index + 1]
        if shared_px > 0:
            weight[tile - shared_px:] = np.linspace(1, 0, shared_px + 2, dtype=np.float32)[1:-1]
    return weight


def blend_tiles(size: tuple[int, int], tiles: list[tuple[int, int, Image.Image]]) -> Image.Image:
    width, height = size
    total = np.zeros((height, width, 3), dtype=np.float32)
    weights = np.zeros((height, width, 1), dtype=np.float32)
    xs = sorted({x for x, _, _ in tiles})
    ys = sorted({y for _, y, _ in tiles})
    for x, y, tile in tiles:
        w, h = tile.size
        weight = _weights(height, y, ys, h)[:, None] * _weights(width, x, xs, w)[None, :]
        total[y:y + h, x:x + w] += np.asarray(tile.convert("RGB"), dtype=np.float32) * weight[..., None]
        weights[y:y + h, x:x + w] += weight[..., None]
    return Image.fromarray(np.clip(total / np.maximum(weights, 1e-6) + 0.5, 0, 255).astype(np.uint8))


def find_upscaler(choice):
    upscalers = shared.sd_upscalers
    if isinstance(choice, (int, float)) and not isinstance(choice, bool):
        if not 0 <= int(choice) < len(upscalers):
            raise InvalidInput(f"SD upscale: upscaler index {choice} is out of range (0..{len(upscalers) - 1})")
        return upscalers[int(choice)]
    found = next((u for u in upscalers if u.name.lower() == str(choice).lower()), None)
    if found is None:
        raise InvalidInput(f"SD upscale: no upscaler named {choice!r}; there are: {', '.join(u.name for u in upscalers)}")
    return found


class Script(scripts.Script):
    def title(self):
        return "SD upscale"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Will upscale the image by the selected scale factor; "
                       "use width and height sliders to set tile size</p>")
        overlap = gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64,
                            elem_id=self.elem_id("overlap"))
        scale_factor = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor", value=2.0,
                                 elem_id=self.elem_id("scale_factor"))
        names = [x.name for x in shared.sd_upscalers]
        upscaler_index = gr.Radio(label="Upscaler", choices=names, value=names[0], type="index",
                                  elem_id=self.elem_id("upscaler_index"))
        return [info, overlap, upscaler_index, scale_factor]

    def run(self, p, _, overlap, upscaler_index, scale_factor):
        if not p.init_images:
            raise InvalidInput("SD upscale: an init image is needed")
        scale_factor, overlap = float(scale_factor), int(overlap)
        if not 1 <= scale_factor <= 8:
            raise InvalidInput("SD upscale: the scale factor must be between 1 and 8")
        upscaler = find_upscaler(upscaler_index)
        init = p.init_images[0].convert("RGB")
        if upscaler.name == "None":
            upscaled = init.resize((int(init.width * scale_factor) // 8 * 8, int(init.height * scale_factor) // 8 * 8),
                                   Image.Resampling.LANCZOS)
        else:
            upscaled = upscaler.scaler.upscale(init, scale_factor, upscaler.data_path)
        tile_w, tile_h = min(p.width, upscaled.width // 8 * 8), min(p.height, upscaled.height // 8 * 8)
        overlap = max(0, min(overlap, min(tile_w, tile_h) // 2))
        xs, ys = tile_starts(upscaled.width, tile_w, overlap), tile_starts(upscaled.height, tile_h, overlap)
        most = getattr(getattr(p, "limits", None), "images", None) or 800
        if len(xs) * len(ys) > most:
            raise InvalidInput(f"SD upscale: {len(xs) * len(ys)} tiles; at most {most} images per request")
        processing.fix_seed(p)
        seed, save = p.seed, not p.do_not_save_samples
        p.width, p.height = tile_w, tile_h
        p.do_not_save_grid = True
        p.do_not_save_samples = True
        p.n_iter = 1
        places = [(x, y) for y in ys for x in xs]
        done, infotexts = [], []
        print(f"SD upscale: {len(places)} tiles of {tile_w}x{tile_h} over {upscaled.width}x{upscaled.height}.")
        for start in range(0, len(places), p.batch_size):
            batch = places[start:start + p.batch_size]
            p.init_images = [upscaled.crop((x, y, x + tile_w, y + tile_h)) for x, y in batch]
            p.batch_size = len(batch)
            p.seed = seed
            processed = process_images(p)
            first = processed.index_of_first_image
            done += [(x, y, image) for (x, y), image in zip(batch, processed.images[first:first + len(batch)])]
            infotexts += processed.infotexts[first:first + len(batch)]
            if len(processed.images) - first < len(batch):  # interrupted: what is finished is blended
                break
        combined = blend_tiles(upscaled.size, [(x, y, img.resize((tile_w, tile_h))) for x, y, img in done]) \
            if done else upscaled
        info = infotexts[0] if infotexts else ""
        if save and p.outpath_samples and getattr(shared.opts, "samples_save", True):
            images.save_image(combined, p.outpath_samples, "", seed, p.prompt,
                              getattr(shared.opts, "samples_format", "png"), info=info, p=p)
        return Processed(p, [combined], seed, info, infotexts=[info])
