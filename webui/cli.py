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

from .generation.params import GenerationSettings, ParamsError, Txt2ImgParams


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m webui.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    txt2img = commands.add_parser("txt2img", help="generate images from a prompt")
    model = txt2img.add_argument_group("model and device (A1111 flags)")
    model.add_argument("--ckpt", help="checkpoint file or folder, or a name/hash from models/Stable-diffusion")
    model.add_argument("--ckpt-dir", help="another folder to look for checkpoints in")
    model.add_argument("--data-dir", default=".", help="where models/ and outputs/ are (default: here)")
    model.add_argument("--use-cpu", nargs="*", default=[], help="'all' runs everything on the CPU")
    model.add_argument("--precision", choices=["full", "autocast"], default="autocast")
    model.add_argument("--no-half", action="store_true", help="fp32 weights on the GPU")
    model.add_argument("--no-half-vae", action="store_true", help="fp32 VAE on the GPU")

    defaults = Txt2ImgParams()
    gen = txt2img.add_argument_group("generation")
    gen.add_argument("--prompt", default="")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--steps", type=int, default=defaults.steps)
    gen.add_argument("--sampler", dest="sampler_name", default=defaults.sampler_name)
    gen.add_argument("--scheduler", default=defaults.scheduler)
    gen.add_argument("--cfg-scale", type=float, default=defaults.cfg_scale)
    gen.add_argument("--seed", type=int, default=-1)
    gen.add_argument("--subseed", type=int, default=-1)
    gen.add_argument("--subseed-strength", type=float, default=0.0)
    gen.add_argument("--width", type=int, default=None, help="default: the model's native size")
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--batch-size", type=int, default=1)
    gen.add_argument("--n-iter", type=int, default=1)
    gen.add_argument("--eta", type=float, default=None)
    gen.add_argument("--outdir", type=Path, default=None, help="default: outputs/txt2img-images/<date>")

    hires = txt2img.add_argument_group("hires fix (a second pass at a larger size)")
    hires.add_argument("--enable-hr", action="store_true")
    hires.add_argument("--hr-scale", type=float, default=defaults.hr_scale)
    hires.add_argument("--hr-upscaler", default=defaults.hr_upscaler, help="a Latent mode, Lanczos, Nearest, None")
    hires.add_argument("--hr-second-pass-steps", type=int, default=0, help="0: as many as the first pass")
    hires.add_argument("--hr-resize-x", type=int, default=0)
    hires.add_argument("--hr-resize-y", type=int, default=0)
    hires.add_argument("--denoising-strength", type=float, default=defaults.denoising_strength)
    hires.add_argument("--hr-sampler", dest="hr_sampler_name", default="")
    hires.add_argument("--hr-scheduler", default="")
    hires.add_argument("--hr-prompt", default="")
    hires.add_argument("--hr-negative-prompt", default="")

    settings = txt2img.add_argument_group("settings")
    settings.add_argument("--clip-skip", type=int, default=1)
    settings.add_argument("--emphasis", default="Original", choices=["Original", "No norm", "Ignore", "None"])
    settings.add_argument("--rng", dest="randn_source", default="GPU", choices=["GPU", "CPU", "NV"])
    settings.add_argument("--ensd", dest="eta_noise_seed_delta", type=int, default=0)
    settings.add_argument("--tiled-vae-decode", action="store_true")
    return parser


def run_txt2img(args: argparse.Namespace) -> int:
    from .devices import choose_devices
    from .generation.processing import txt2img
    from .models.discovery import find_checkpoint
    from .models.loading import CheckpointError, load_checkpoint

    data_dir = Path(args.data_dir)
    devices = choose_devices(args.use_cpu, args.precision, args.no_half, args.no_half_vae)
    try:
        cache = data_dir / "cache.json"  # sha256 of each checkpoint, computed once
        info = find_checkpoint(args.ckpt, models_dir=data_dir / "models" / "Stable-diffusion", ckpt_dir=args.ckpt_dir,
                               cache_path=cache)
        model = load_checkpoint(info, devices.device, devices.dtype, vae_dtype=devices.vae_dtype, cache_path=cache)
    except (CheckpointError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = GenerationSettings(
        clip_skip=args.clip_skip, emphasis=args.emphasis, randn_source=args.randn_source,
        eta_noise_seed_delta=args.eta_noise_seed_delta, tiled_vae_decode=args.tiled_vae_decode,
    )
    names = {f.name for f in fields(Txt2ImgParams)} - {"settings", "width", "height"}
    params = Txt2ImgParams(**{k: v for k, v in vars(args).items() if k in names}, settings=settings,
                           width=args.width or model.default_size, height=args.height or model.default_size)
    try:
        result = txt2img(model, params, outputs_root=data_dir / "outputs")
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, text in zip(result.paths, result.infotexts):
        print(f"{path}\t{json.dumps(text, ensure_ascii=False)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_txt2img(args)


if __name__ == "__main__":
    sys.exit(main())
