"""Generate from the command line: `python -m webui.cli txt2img --prompt "a cat" --steps 20`.

Prints one line per image: the saved file's path, a tab, and the image's infotext as a
JSON string (the infotext has newlines of its own). The same processing function serves
the WebUI and the API.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .flags import add_limit_flags
from .generation.params import GenerationSettings, Limits, ParamsError, Txt2ImgParams


def _common_flags() -> argparse.ArgumentParser:
    """Model, device, generation and settings flags shared by txt2img and img2img."""
    common = argparse.ArgumentParser(add_help=False)
    model = common.add_argument_group("model and device (A1111 flags)")
    model.add_argument("--ckpt", help="checkpoint file or folder, or a name/hash from models/Stable-diffusion")
    model.add_argument("--ckpt-dir", help="another folder to look for checkpoints in")
    model.add_argument("--data-dir", default=".", help="where models/ and outputs/ are (default: here)")
    model.add_argument("--lora-dir", default=None, help="LoRA folder (default: DATA_DIR/models/Lora)")
    model.add_argument("--embeddings-dir", default=None, help="textual-inversion folder (default: DATA_DIR/embeddings)")
    model.add_argument("--vae-dir", default=None, help="VAE folder (default: DATA_DIR/models/VAE)")
    model.add_argument("--vae", default="Automatic",
                       help='"Automatic" (a VAE named like the checkpoint), "None" (its own), or a VAE file name or path')
    model.add_argument("--use-cpu", nargs="*", default=[], help="'all' runs everything on the CPU")
    model.add_argument("--precision", choices=["full", "autocast"], default="autocast")
    model.add_argument("--no-half", action="store_true", help="fp32 weights on the GPU")
    model.add_argument("--no-half-vae", action="store_true", help="fp32 VAE on the GPU")
    model.add_argument("--disable-nan-check", action="store_true", help="keep images whose UNet or VAE output held NaNs")
    from .runtime import add_speed_flags

    add_speed_flags(common.add_argument_group("speed and memory (as launch.py)"))

    # None: the checkpoint's own default (the demo model's webui.json), else Txt2ImgParams's.
    gen = common.add_argument_group("generation")
    gen.add_argument("--prompt", default="")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--steps", type=int, default=None, help="default: the model's, else 20")
    gen.add_argument("--sampler", dest="sampler_name", default=None, help="default: the model's, else DPM++ 2M")
    gen.add_argument("--scheduler", default="Automatic")
    gen.add_argument("--cfg-scale", type=float, default=None, help="default: the model's, else 7")
    gen.add_argument("--seed", type=int, default=-1)
    gen.add_argument("--subseed", type=int, default=-1)
    gen.add_argument("--subseed-strength", type=float, default=0.0)
    gen.add_argument("--width", type=int, default=None, help="default: the model's (txt2img) or the image's size")
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--batch-size", type=int, default=1)
    gen.add_argument("--n-iter", type=int, default=1)
    gen.add_argument("--eta", type=float, default=None)
    gen.add_argument("--denoising-strength", type=float, default=Txt2ImgParams.denoising_strength,
                     help="img2img: how much to change; txt2img: the hires pass's")
    gen.add_argument("--outdir", type=Path, default=None,
                     help="default: the data dir's settings' folder for the mode (config.json outdir_<mode>_samples, "
                          "as the WebUI saves; else outputs/<mode>-images), then <date>")

    settings = common.add_argument_group("settings")
    settings.add_argument("--clip-skip", type=int, default=1)
    settings.add_argument("--emphasis", default="Original", choices=["Original", "No norm", "Ignore", "None"])
    settings.add_argument("--rng", dest="randn_source", default="GPU", choices=["GPU", "CPU", "NV"])
    settings.add_argument("--ensd", dest="eta_noise_seed_delta", type=int, default=0)
    settings.add_argument("--tiled-vae-decode", action="store_true")
    add_limit_flags(common)  # the WebUI's --max-* limits, so the CLI refuses the same requests unless raised
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m webui.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = _common_flags()
    defaults = Txt2ImgParams()

    txt2img = commands.add_parser("txt2img", help="generate images from a prompt", parents=[common])
    hires = txt2img.add_argument_group("hires fix (a second pass at a larger size)")
    hires.add_argument("--enable-hr", action="store_true")
    hires.add_argument("--hr-scale", type=float, default=defaults.hr_scale)
    hires.add_argument("--hr-upscaler", default=defaults.hr_upscaler, help="a Latent mode, Lanczos, Nearest, None")
    hires.add_argument("--hr-second-pass-steps", type=int, default=0, help="0: as many as the first pass")
    hires.add_argument("--hr-resize-x", type=int, default=0)
    hires.add_argument("--hr-resize-y", type=int, default=0)
    hires.add_argument("--hr-sampler", dest="hr_sampler_name", default="")
    hires.add_argument("--hr-scheduler", default="")
    hires.add_argument("--hr-prompt", default="")
    hires.add_argument("--hr-negative-prompt", default="")

    img2img = commands.add_parser("img2img", help="rework or inpaint images", parents=[common])
    group = img2img.add_argument_group("img2img and inpaint (A1111's fields)")
    group.add_argument("--init", dest="init_images", action="append", required=True, type=Path,
                       help="init image; repeat for several (image i of a batch uses init i mod count)")
    group.add_argument("--mask", type=Path, default=None, help="inpaint mask: white (or opaque alpha) = repaint")
    group.add_argument("--resize-mode", type=int, default=0, choices=range(4),
                       help="0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale)")
    group.add_argument("--mask-blur", type=int, default=4)
    group.add_argument("--inpainting-fill", type=int, default=1, choices=range(4),
                       help="masked content: 0 fill, 1 original, 2 latent noise, 3 latent nothing")
    group.add_argument("--inpaint-full-res", action="store_true", help='inpaint area "Only masked"')
    group.add_argument("--inpaint-full-res-padding", type=int, default=32)
    group.add_argument("--inpainting-mask-invert", action="store_const", const=1, default=0,
                       help='mask mode "Inpaint not masked"')
    group.add_argument("--initial-noise-multiplier", type=float, default=1.0)
    return parser


def _load_model(args: argparse.Namespace):
    """The checkpoint the flags name, or None after printing why it can't be used. As in the WebUI, the
    built-in demo model is there while models/Stable-diffusion holds none of the user's."""
    import torch

    from .devices import choose_devices
    from .models.discovery import available_checkpoints, find_checkpoint
    from .models.loading import load_checkpoint
    from .models.weights import CheckpointError
    from .runtime import RuntimeOptions, apply_attention_flags, prepare

    data_dir = Path(args.data_dir)
    devices = choose_devices(args.use_cpu, args.precision, args.no_half, args.no_half_vae)
    cache = data_dir / "cache.json"  # sha256 of each checkpoint, computed once
    try:
        models_dir = data_dir / "models" / "Stable-diffusion"
        known = available_checkpoints(models_dir, args.ckpt_dir, cache_path=cache)
        info = find_checkpoint(args.ckpt, known, models_dir=models_dir, ckpt_dir=args.ckpt_dir, cache_path=cache)
        options = RuntimeOptions.from_flags(args)
        load_device = torch.device("cpu") if options.loads_on_cpu else devices.device
        model = load_checkpoint(info, load_device, devices.dtype, vae_dtype=devices.vae_dtype, cache_path=cache)
        _use_vae(args, model, cache)
        apply_attention_flags(args)
        return prepare(model, options, devices.device)
    except (CheckpointError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def _use_vae(args: argparse.Namespace, model, cache: Path) -> None:
    """--vae: a file path, or a name resolved as the sd_vae setting is (models/vae.py)."""
    from .models.vae import apply_vae, list_vaes, resolve_vae

    data_dir = Path(args.data_dir)
    if args.vae not in ("Automatic", "None") and Path(args.vae).is_file():
        path = Path(args.vae)
    else:
        vaes = list_vaes(args.vae_dir or data_dir / "models" / "VAE",
                         [data_dir / "models" / "Stable-diffusion", args.ckpt_dir])
        path = resolve_vae(args.vae, model.path, vaes)
    apply_vae(model, path, cache)


def _embeddings(args: argparse.Namespace, model):
    """The textual-inversion embeddings of --embeddings-dir that fit `model`."""
    from .networks.embeddings import EmbeddingDatabase

    data_dir = Path(args.data_dir)
    database = EmbeddingDatabase(args.embeddings_dir or data_dir / "embeddings", data_dir / "cache.json")
    found = database.for_model(model)
    for name, (_, reason) in found.skipped.items():
        print(f"warning: embedding {name} skipped: {reason}", file=sys.stderr)
    return found


def _params(cls, args: argparse.Namespace, model, **given):
    """The typed params from the flags whose names are fields of `cls`; flags left out take the model's
    own defaults (models/loading.py `own_defaults`), then the dataclass's."""
    from .models.loading import own_defaults

    settings = GenerationSettings(
        clip_skip=args.clip_skip, emphasis=args.emphasis, randn_source=args.randn_source,
        eta_noise_seed_delta=args.eta_noise_seed_delta, tiled_vae_decode=args.tiled_vae_decode,
        nan_check=not args.disable_nan_check,
    )
    names = {f.name for f in fields(cls)} - {"settings", "limits", *given}
    values = {**own_defaults(model.metadata), **{k: v for k, v in vars(args).items() if k in names and v is not None}}
    return cls(**{k: v for k, v in values.items() if k in names}, settings=settings, limits=Limits.from_flags(args),
               **given)


def _generate(function, kind: str, model, params, data_dir: str, lora_dir: str | None = None, embeddings=None) -> int:
    from .generation.decoding import NansError
    from .networks import LoraLibrary
    from .options import Options, output_folder

    data = Path(data_dir)
    networks = LoraLibrary(Path(lora_dir) if lora_dir else data / "models" / "Lora", data / "cache.json")
    # The folder the WebUI on this data dir saves in: its config.json's output folder settings.
    samples_dir = output_folder(Options(data / "config.json"), data, kind)
    try:
        result = function(model, params, outputs_root=data / "outputs", networks=networks, embeddings=embeddings,
                          samples_dir=samples_dir)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NansError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, text in zip(result.paths, result.infotexts):
        print(f"{path}\t{json.dumps(text, ensure_ascii=False)}", flush=True)
    return 0


def run_txt2img(args: argparse.Namespace) -> int:
    from .generation.processing import txt2img

    model = _load_model(args)
    if model is None:
        return 2
    from .models.loading import own_defaults

    sizes = {"width": model.default_size, "height": model.default_size} | own_defaults(model.metadata)
    params = _params(Txt2ImgParams, args, model, width=args.width or sizes["width"], height=args.height or sizes["height"])
    return _generate(txt2img, "txt2img", model, params, args.data_dir, args.lora_dir, _embeddings(args, model))


def run_img2img(args: argparse.Namespace) -> int:
    from .generation.img2img import Img2ImgParams, img2img, load_image

    try:  # unreadable images fail before the model loads
        init_images = [load_image(path, "init image") for path in args.init_images]
        mask = load_image(args.mask, "mask") if args.mask is not None else None
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = _load_model(args)
    if model is None:
        return 2
    # Default size: the first init image's, down to a multiple of 8.
    width = args.width or max(init_images[0].width // 8 * 8, 64)
    height = args.height or max(init_images[0].height // 8 * 8, 64)
    params = _params(Img2ImgParams, args, model, init_images=init_images, mask=mask, width=width, height=height)
    return _generate(img2img, "img2img", model, params, args.data_dir, args.lora_dir, _embeddings(args, model))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .runtime import refusals

    for problem in refusals(args):
        parser.error(problem)
    return run_img2img(args) if args.command == "img2img" else run_txt2img(args)


if __name__ == "__main__":
    sys.exit(main())
