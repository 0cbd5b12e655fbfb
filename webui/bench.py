"""Benchmark: our txt2img against plain diffusers on the same random-weight model.

    python -m webui.bench                      # CPU: a small SD1-shaped model, 256x256
    python -m webui.bench --arch sd15 --size 512 --dtype fp16   # on a GPU: real SD1.5 shapes
    python -m webui.bench --family sdxl        # SDXL (small on CPU; --arch full: real shapes, 1024x1024 on a GPU)
    python -m webui.bench --family flux        # Flux.1 dev: distilled guidance 3.5, CFG 1, Euler

Both sides get the same UNet, VAE and text encoder, DPM++ 2M with Karras sigmas, CFG 7,
the same step count and size, and are timed end to end (text encoding, sampling, VAE
decode; no saving). A third run times our loop with a prompt that switches text at step
10, to show that a prompt-schedule swap costs nothing; a fourth adds the hires fix. Prints
it/s, peak memory and the ratio of ours to diffusers.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["small", "sd15", "full"], default=None,
                        help="default: real shapes (sd15 / full) on CUDA, small on CPU")
    parser.add_argument("--size", type=int, default=None, help="default: 512 on CUDA, 256 on CPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None, help="default: fp16 on CUDA")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case; the best is reported")
    parser.add_argument("--family", choices=["sd1", "sdxl", "flux"], default="sd1")
    args = parser.parse_args()
    if args.family != "sd1":
        return family_bench(args)

    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from .generation.params import Txt2ImgParams
    from .generation.processing import txt2img

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    arch = args.arch or ("sd15" if cuda else "small")
    size = args.size or (512 if cuda else 256)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("fp16" if cuda else "fp32")]
    model = random_model(arch, device, dtype)
    prompt = "a photo of a cat sitting on a red sofa, detailed, soft light"

    pipe = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0], unet=model.unet,
        scheduler=DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              use_karras_sigmas=True, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    def run_diffusers():
        pipe(prompt, num_inference_steps=args.steps, guidance_scale=7.0, height=size, width=size,
             num_images_per_prompt=args.batch_size, generator=torch.Generator(device).manual_seed(1))

    def run_ours(text, **hires):
        params = Txt2ImgParams(prompt=text, steps=args.steps, width=size, height=size, batch_size=args.batch_size,
                               seed=1, sampler_name="DPM++ 2M", scheduler="Karras", save_images=False, **hires)
        return lambda: txt2img(model, params)

    def run_img2img(text):
        from PIL import Image

        from .generation.img2img import Img2ImgParams, img2img

        init = Image.new("RGB", (size, size), (200, 80, 40))
        params = Img2ImgParams(prompt=text, steps=args.steps, width=size, height=size, batch_size=args.batch_size,
                               seed=1, sampler_name="DPM++ 2M", scheduler="Karras", save_images=False,
                               init_images=[init], denoising_strength=0.5)
        return lambda: img2img(model, params)

    cases = {
        "diffusers StableDiffusionPipeline": run_diffusers,
        "ours (txt2img)": run_ours(prompt),
        "ours, prompt edited at step 10": run_ours(prompt.replace("a cat", "[a cat:a dog:10]")),
        "ours + hires fix x1.5, 10 steps": run_ours(prompt, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=10,
                                                   denoising_strength=0.5),
        "ours img2img, strength 0.5": run_img2img(prompt),
    }
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; torch {torch.__version__}; {arch} "
          f"random weights, {size}x{size}, {args.steps} steps, batch {args.batch_size}, {str(dtype).split('.')[-1]}, "
          "DPM++ 2M Karras, CFG 7")
    results = {}
    for name, run in cases.items():
        run()  # warm-up: kernels, allocator, caches
        best = min(timed(run, device) for _ in range(args.repeat))
        results[name] = best
        seconds, peak = best
        # it/s over the steps that ran: img2img at strength 0.5 runs half plus one
        ran = args.steps // 2 + 1 if "img2img" in name else args.steps
        rate = f"{ran / seconds:7.2f} it/s" if "hires" not in name else " " * 12  # two passes: no single rate
        print(f"{name:36} {rate}  {seconds:7.3f} s  peak {peak:6.2f} GiB")
    ratio = results["diffusers StableDiffusionPipeline"][0] / results["ours (txt2img)"][0]
    swap = results["ours, prompt edited at step 10"][0] / results["ours (txt2img)"][0]
    print(f"ours / diffusers speed: {ratio:.3f}x; edited-prompt time / plain-prompt time: {swap:.3f}")


def family_bench(args) -> None:
    """Ours against the family's diffusers pipeline on the same random weights, Euler on the model's own
    schedule (SDXL: CFG 7; Flux: CFG 1 with distilled guidance 3.5)."""
    from . import bench_models
    from .generation.params import Txt2ImgParams
    from .generation.processing import txt2img

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    full = (args.arch or ("full" if cuda else "small")) in ("full", "sd15")
    size = args.size or ((1024 if full else 256) if cuda else 256)
    default_dtype = ("bf16" if args.family == "flux" else "fp16") if cuda else "fp32"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or default_dtype]
    model, pipe = getattr(bench_models, args.family)(full, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    prompt = "a photo of a cat sitting on a red sofa, detailed, soft light"
    flux = args.family == "flux"
    cfg = 1.0 if flux else 7.0

    def run_diffusers():
        extra = {"guidance_scale": 3.5} if flux else {"guidance_scale": cfg}
        pipe(prompt, num_inference_steps=args.steps, height=size, width=size, num_images_per_prompt=args.batch_size,
             generator=torch.Generator(device).manual_seed(1), **extra)

    def run_ours(text):
        params = Txt2ImgParams(prompt=text, steps=args.steps, width=size, height=size, batch_size=args.batch_size,
                               seed=1, sampler_name="Euler", cfg_scale=cfg, save_images=False,
                               distilled_cfg_scale=3.5 if flux else None)
        return lambda: txt2img(model, params)

    cases = {f"diffusers {type(pipe).__name__}": run_diffusers, "ours (txt2img)": run_ours(prompt),
             "ours, prompt edited at step 10": run_ours(prompt.replace("a cat", "[a cat:a dog:10]"))}
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; torch {torch.__version__}; {args.family} "
          f"{'full' if full else 'small'} random weights, {size}x{size}, {args.steps} steps, batch {args.batch_size}, "
          f"{str(dtype).split('.')[-1]}, Euler, CFG {cfg:g}{' + distilled 3.5' if flux else ''}")
    results = {}
    for name, run in cases.items():
        run()
        results[name] = min(timed(run, device) for _ in range(args.repeat))
        seconds, peak = results[name]
        print(f"{name:36} {args.steps / seconds:7.2f} it/s  {seconds:7.3f} s  peak {peak:6.2f} GiB")
    reference = next(iter(results.values()))[0]
    print(f"ours / diffusers speed: {reference / results['ours (txt2img)'][0]:.3f}x")


if __name__ == "__main__":
    main()
