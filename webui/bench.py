"""Benchmark: our txt2img against plain diffusers on the same random-weight models, eager and compiled
(--compile), with peak memory, and the memory modes (--medvram, --lowvram). Prints a table with the device.

    python -m webui.bench                      # CPU: a small SD1-shaped model, 256x256 (the CI figure)
    python -m webui.bench --suite gpu          # on a GPU: SD1.5 512 and SDXL 1024 (real shapes, fp16), diffusers vs
                                               # ours eager vs ours compiled, then ours with --medvram and --lowvram
    python -m webui.bench --family sdxl        # one family (sd1, sdxl, flux); --compile / --memory-modes add those cases
    python -m webui.bench --arch sd15 --size 512 --dtype fp16   # real SD1.5 shapes

Both sides get the same UNet, VAE and text encoders, the same sampler (SD1: DPM++ 2M Karras; SDXL and Flux:
Euler), CFG (7; Flux 1 with distilled guidance 3.5), step count and size, and are timed end to end (text
encoding, sampling, VAE decode; no saving), the best of --repeat runs after a warm-up run (which is where
--compile compiles: its time is shown apart). For SD1, extra cases time a prompt that switches text at step
10 (a prompt-schedule swap should cost nothing), the hires fix and img2img.
"""
from __future__ import annotations

import argparse
import copy
import gc
import resource
import time
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parent / "models" / "configs"
TOKENIZER = Path(__file__).resolve().parent / "models" / "clip_tokenizer"


def random_model(arch: str, device: torch.device, dtype: torch.dtype):
    """An SD1-family model with random weights: full SD1.5 shapes, or a small one for CPUs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .families import SD1, scaled_linear_alphas_cumprod
    from .models.model import SDModel

    torch.manual_seed(0)
    if arch == "sd15":
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "sd1" / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "sd1" / "vae"))
        text_config = CLIPTextConfig.from_pretrained(CONFIGS / "sd1" / "text_encoder")
    else:
        unet = UNet2DConditionModel(
            block_out_channels=(64, 128, 128), layers_per_block=1, cross_attention_dim=256, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=32,
        )
        vae = AutoencoderKL(block_out_channels=(32, 32, 64, 64), latent_channels=4, layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        text_config = CLIPTextConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                                     max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")
    text_encoder = CLIPTextModel(text_config)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)
    for module in (unet, vae, text_encoder):
        module.to(device, dtype).eval().requires_grad_(False)
    return SDModel(SD1, unet, vae, [text_encoder], [tokenizer], scaled_linear_alphas_cumprod(),
                   name=f"random-{arch}", device=device, dtype=dtype)


def timed(function, device: torch.device) -> tuple[float, float]:
    """Seconds and peak memory (GiB; CUDA allocator, or the process's peak RSS on CPU)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return time.perf_counter() - start, peak


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
PROMPT = "a photo of a cat sitting on a red sofa, detailed, soft light"


def build(family: str, args, device: torch.device):
    """(model, the diffusers pipeline on the same modules, size, dtype, our sampler, CFG, described)."""
    from . import bench_models

    cuda = device.type == "cuda"
    if family == "sd1":
        arch = args.arch or ("sd15" if cuda else "small")
        full = arch == "sd15"
    else:
        full = (args.arch or ("full" if cuda else "small")) in ("full", "sd15")
    default_size = {"sd1": 512 if full else 256, "sdxl": 1024 if full else 256, "flux": 1024 if full else 256}[family]
    size = args.size or default_size
    dtype = DTYPES[args.dtype or (("bf16" if family == "flux" else "fp16") if cuda else "fp32")]
    if family == "sd1":
        model = random_model("sd15" if full else "small", device, dtype)
        pipe = sd1_pipeline(model)
        sampler, scheduler, cfg = "DPM++ 2M", "Karras", 7.0
    else:
        model, pipe = getattr(bench_models, family)(full, device, dtype)
        sampler, scheduler, cfg = "Euler", "Automatic", 1.0 if family == "flux" else 7.0
    pipe.set_progress_bar_config(disable=True)
    described = (f"{family} {'full' if full else 'small'} random weights, {size}x{size}, {str(dtype).split('.')[-1]}, "
                 f"{sampler}{' Karras' if scheduler == 'Karras' else ''}, CFG {cfg:g}"
                 f"{' + distilled 3.5' if family == 'flux' else ''}")
    return model, pipe, size, sampler, scheduler, cfg, described


def sd1_pipeline(model):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0], unet=model.unet,
        scheduler=DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              use_karras_sigmas=True, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def family_rows(family: str, args, device: torch.device) -> tuple[str, list[tuple]]:
    """Every case of one family: (case, steps run, seconds, peak GiB, warm-up seconds, two passes?)."""
    from . import fast_path, memory
    from .generation.img2img import Img2ImgParams, img2img
    from .generation.params import GenerationSettings, Txt2ImgParams
    from .generation.processing import txt2img

    model, pipe, size, sampler, scheduler, cfg, described = build(family, args, device)
    flux = family == "flux"

    def run_diffusers():
        extra = {"guidance_scale": 3.5 if flux else cfg}
        pipe(PROMPT, num_inference_steps=args.steps, height=size, width=size, num_images_per_prompt=args.batch_size,
             generator=torch.Generator(device).manual_seed(1), **extra)

    def ours(text=PROMPT, **more):
        # random weights in fp16 may overflow to NaNs: that is no reason to stop timing (diffusers does not check)
        params = Txt2ImgParams(prompt=text, steps=args.steps, width=size, height=size, batch_size=args.batch_size,
                               seed=1, sampler_name=sampler, scheduler=scheduler, cfg_scale=cfg, save_images=False,
                               distilled_cfg_scale=3.5 if flux else None, settings=GenerationSettings(nan_check=False),
                               **more)
        return lambda: txt2img(model, params)

    def ours_img2img():
        from PIL import Image

        params = Img2ImgParams(prompt=PROMPT, steps=args.steps, width=size, height=size, batch_size=args.batch_size,
                               seed=1, sampler_name=sampler, scheduler=scheduler, save_images=False,
                               init_images=[Image.new("RGB", (size, size), (200, 80, 40))], denoising_strength=0.5,
                               settings=GenerationSettings(nan_check=False))
        return lambda: img2img(model, params)

    rows = []

    def case(name, run, steps=args.steps, passes=1):
        started = time.perf_counter()
        run()  # warm-up: kernels, allocator, caches; with --compile, the compilation
        warm = time.perf_counter() - started
        seconds, peak = min(timed(run, device) for _ in range(args.repeat))
        rows.append((name, steps, seconds, peak, warm, passes))
        print(f"  {name:34} {_rate(rows[-1])}  {seconds:7.3f} s  peak {peak:6.2f} GiB", flush=True)

    print(described, flush=True)
    case(f"diffusers {type(pipe).__name__}", run_diffusers)
    case("ours", ours())
    case("ours, prompt edited at step 10", ours(PROMPT.replace("a cat", "[a cat:a dog:10]")))
    if family == "sd1" and args.extras:
        case("ours + hires fix x1.5, 10 steps", ours(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=10,
                                                    denoising_strength=0.5), passes=2)
        case("ours img2img, strength 0.5", ours_img2img(), steps=args.steps // 2 + 1)
    if args.compile:
        fast_path.enable(model)  # the pipeline shares the UNet: only ours runs from here on
        case("ours --compile", ours())
        case("ours --compile, prompt edited", ours(PROMPT.replace("a cat", "[a cat:a dog:10]")))
        fast_path.disable(model)
    if args.memory_modes:
        for mode in ("medvram", "lowvram"):
            placement = memory.configure(model, memory.MemoryOptions(mode), device)
            case(f"ours --{mode}", ours())
            placement.remove()
            model.placement = model.memory_options = None
    return described, rows


def _rate(row) -> str:
    name, steps, seconds, peak, warm, passes = row
    return f"{steps / seconds:7.2f} it/s" if passes == 1 else " " * 12  # two passes: no single rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["gpu"], default=None,
                        help="gpu: SD1.5 512 and SDXL 1024 with --compile and --memory-modes, one table")
    parser.add_argument("--family", choices=["sd1", "sdxl", "flux"], default="sd1")
    parser.add_argument("--arch", choices=["small", "sd15", "full"], default=None,
                        help="default: real shapes (sd15 / full) on CUDA, small on CPU")
    parser.add_argument("--size", type=int, default=None, help="default: the family's on CUDA, 256 on CPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtype", choices=list(DTYPES), default=None, help="default: fp16 on CUDA (Flux: bf16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case; the best is reported")
    parser.add_argument("--compile", action="store_true", help="add ours with --compile")
    parser.add_argument("--memory-modes", action="store_true", help="add ours with --medvram and --lowvram")
    parser.add_argument("--no-extras", dest="extras", action="store_false",
                        help="SD1: leave out the hires fix and img2img cases")
    args = parser.parse_args()
    families = [args.family]
    if args.suite == "gpu":
        families, args.compile, args.memory_modes, args.extras = ["sd1", "sdxl"], True, True, False
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {args.steps} steps, batch {args.batch_size}", flush=True)
    results = []
    for family in families:
        results.append(family_rows(family, copy.copy(args), device))
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    print_table(name, results)


def print_table(device_name: str, results: list) -> None:
    print(f"\n| {device_name} | case | it/s | s | peak GiB | warm-up s | vs diffusers |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for described, rows in results:
        reference = rows[0][2]
        for row in rows:
            name, steps, seconds, peak, warm, passes = row
            rate = f"{steps / seconds:.2f}" if passes == 1 else "-"
            ratio = f"{reference / seconds:.2f}x" if passes == 1 and steps == rows[0][1] else "-"
            print(f"| {described.split(' random')[0]} | {name} | {rate} | {seconds:.3f} | {peak:.2f} | {warm:.1f} | {ratio} |")
    for described, _ in results:
        print(f"- {described}")


if __name__ == "__main__":
    main()
