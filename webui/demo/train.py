"""Train the built-in demo model on the shapes data set, and export it as a diffusers folder.

    python -m webui.demo.train --work train-demo --vae-steps 1100 --unet-steps 9500 \
        --export models/demo/shapes-demo [--init-from models/demo/shapes-demo]

The model is an SD 1.x-family latent diffusion model in miniature (AutoencoderKL with factor 8
and 4 latent channels, UNet2DConditionModel with cross attention, CLIPTextModel read through the
bundled CLIP tokenizer), so the WebUI runs it through exactly the code a real checkpoint takes.
Two stages, one script: the autoencoder first, then the UNet and the text encoder together on
the autoencoder's latents (encoded once, sampled from their distribution every step). Each
stage saves to `--work` as it goes and a rerun resumes from there (or, with `--init-from`, an empty
`--work` starts from an exported model); the exported weights are the exponential moving average of
the UNet and text encoder.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.loading import METADATA_FILE, TOKENIZER_DIR
from ..families import scaled_linear_alphas_cumprod
from .shapes import make_dataset

SIZE = 128
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[32, 64, 64, 64], layers_per_block=1,
    latent_channels=4, norm_num_groups=16, sample_size=SIZE,
)
UNET_CONFIG = dict(
    sample_size=SIZE // 8, in_channels=4, out_channels=4, block_out_channels=[64, 128, 128],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    layers_per_block=1, cross_attention_dim=128, attention_head_dim=8, norm_num_groups=16,
)
TEXT_CONFIG = dict(
    vocab_size=49408, hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}
# What the WebUI starts with for this model (its own metadata, read by webui.models.loading).
GENERATION_DEFAULTS = {"width": SIZE, "height": SIZE, "steps": 20, "cfg_scale": 5.0, "sampler_name": "DPM++ 2M"}


def build_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(**VAE_CONFIG)


def build_unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**UNET_CONFIG)


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def tokenize(captions: list[str]) -> torch.Tensor:
    """Token ids as the WebUI's prompt encoder builds them for SD 1.x: start, text, end-token padding to 77."""
    from transformers import CLIPTokenizer
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True)
    return tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def _pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _lr(step: int, total: int, peak: float, warmup: int = 100, restarted_at: int | None = None) -> float:
    """Linear warmup, then cosine decay to 0 at `total`; a fresh optimizer at `restarted_at` warms up again."""
    if step < warmup:
        return peak * (step + 1) / warmup
    again = 1.0 if restarted_at is None else min(1.0, (step - restarted_at + 1) / warmup)
    return again * peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _save(state: dict, path: Path) -> None:
    """Write then rename, so a run stopped mid-save (or a reader) never sees half a checkpoint."""
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def load_data(work: Path, count: int, seed: int):
    cache = work / f"data-{count}-{seed}.npz"
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return data["images"], [str(c) for c in data["captions"]]
    started = time.perf_counter()
    images, _, captions = make_dataset(count, seed, SIZE)
    np.savez(cache, images=images, captions=np.array(captions))
    _log(f"data: {count} scenes in {time.perf_counter() - started:.0f} s")
    return images, captions


def train_vae(work: Path, images: np.ndarray, steps: int, batch: int, seed: int):
    vae = build_vae()
    with torch.no_grad():  # start near-deterministic: unit posterior noise would drown the young encoder's signal
        vae.quant_conv.bias[VAE_CONFIG["latent_channels"]:] = -6.0
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    state_path, step = work / "vae.pt", 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        vae.load_state_dict(state["model"])
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    generator = torch.Generator().manual_seed(seed + step)
    started = time.perf_counter()
    vae.train()
    while step < steps:
        # The VAE is convolutional, so crops teach it: small ones (cheap) first, larger ones at the end.
        crop = 32 if step < 0.75 * steps else 64
        index = torch.randint(len(images), (batch if crop == 32 else batch // 2,), generator=generator)
        x0, y0 = torch.randint(0, SIZE - crop + 1, (2,), generator=generator).tolist()
        x = _pixels(images[index.numpy()])[:, :, y0:y0 + crop, x0:x0 + crop]
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, 1e-3)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.l1_loss(recon, x) + 0.5 * F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 50 == 0 or step == steps:
            _save({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, state_path)
            _log(f"vae {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s this run)")
    return vae.eval()


@torch.no_grad()
def encode_latents(work: Path, vae, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean and std of every image's latent distribution, and the scaling factor that gives unit variance."""
    path = work / "latents.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        return saved["mean"], saved["std"], float(saved["scale"])
    means, stds = [], []
    for start in range(0, len(images), 256):
        posterior = vae.encode(_pixels(images[start:start + 256])).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)
    scale = float(1.0 / (mean + std * torch.randn_like(mean)).std())
    _save({"mean": mean, "std": std, "scale": scale}, path)
    _log(f"latents: {tuple(mean.shape)}, scaling factor {scale:.4f}")
    return mean, std, scale


def train_unet(work: Path, latents, captions: list[str], steps: int, batch: int, seed: int, lr: float,
               min_snr: float):
    mean, std, scale = latents
    unet, text_encoder = build_unet(), build_text_encoder()
    ema_unet, ema_text = build_unet().requires_grad_(False), build_text_encoder().requires_grad_(False)
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text_encoder.state_dict())
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    state_path, step, restarted_at = work / "unet.pt", 0, None
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        for module, key in ((unet, "unet"), (text_encoder, "text"), (ema_unet, "ema_unet"), (ema_text, "ema_text")):
            module.load_state_dict(state[key])
        step = state["step"]
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        else:  # seeded from an export: Adam's statistics start empty, so warm the learning rate up again
            restarted_at = step
    ids = tokenize(captions)
    empty = tokenize([""])[0]
    alphas = scaled_linear_alphas_cumprod(SCHEDULER_CONFIG["num_train_timesteps"])
    generator = torch.Generator().manual_seed(seed + 1 + step)
    started = time.perf_counter()
    unet.train()
    text_encoder.train()
    while step < steps:
        index = torch.randint(len(captions), (batch,), generator=generator)
        z = (mean[index] + std[index] * torch.randn(mean[index].shape, generator=generator)) * scale
        tokens = ids[index].clone()
        tokens[torch.rand(batch, generator=generator) < 0.1] = empty  # unconditional 10%: CFG needs it
        t = torch.randint(0, len(alphas), (batch,), generator=generator)
        noise = torch.randn(z.shape, generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup=200, restarted_at=restarted_at)
        prediction = unet(noisy, t, text_encoder(tokens).last_hidden_state).sample
        # Min-SNR weighting (Hang et al. 2023): nearly clean steps stop dominating, so layout and colour learn sooner.
        snr = a.view(-1) / (1 - a.view(-1))
        weight = snr.clamp(max=min_snr) / snr if min_snr else torch.ones_like(snr)
        loss = (F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_unet, unet), (ema_text, text_encoder)):
                for e, p in zip(ema.parameters(), live.parameters()):
                    e.lerp_(p, 1 - decay)
        if step % 100 == 0 or step == steps:
            _save({"unet": unet.state_dict(), "text": text_encoder.state_dict(), "ema_unet": ema_unet.state_dict(),
                   "ema_text": ema_text.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, state_path)
            _log(f"unet {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s this run)")
    return ema_unet.eval(), ema_text.eval()


def training_record(folder: Path) -> dict:
    """The training record an export keeps in its metadata."""
    return json.loads((folder / METADATA_FILE).read_text())["training"]


def seed_from_export(folder: Path, work: Path) -> None:
    """Start `work` from an exported model (its EMA weights, fp16 widened to fp32), so training goes on from it
    when the original checkpoints are gone; the step counts come from its training record."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    if (work / "vae.pt").exists() or (work / "unet.pt").exists():
        _log(f"{work} already holds checkpoints: resuming them, not seeding from {folder}")
        return
    record = training_record(folder)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
    text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32)
    _save({"model": vae.state_dict(), "step": record["vae_steps"]}, work / "vae.pt")
    _save({"unet": unet.state_dict(), "text": text.state_dict(), "ema_unet": unet.state_dict(),
           "ema_text": text.state_dict(), "step": record["unet_steps"]}, work / "unet.pt")
    _log(f"seeded {work} from {folder}: autoencoder at step {record['vae_steps']}, UNet at {record['unet_steps']}")


def export(folder: Path, vae, unet, text_encoder, scale: float, card: dict) -> None:
    """Write a diffusers folder in fp16 that the WebUI's loader (and diffusers) reads offline."""
    folder.mkdir(parents=True, exist_ok=True)
    vae.register_to_config(scaling_factor=round(scale, 5))
    for name, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
        module.to(torch.float16).save_pretrained(folder / name, safe_serialization=True)
        module.to(torch.float32)
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2) + "\n")
    shutil.copytree(TOKENIZER_DIR, folder / "tokenizer", dirs_exist_ok=True)
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / METADATA_FILE).write_text(json.dumps({"demo": True, "defaults": GENERATION_DEFAULTS,
                                                    "training": card}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("train-demo"), help="checkpoints and caches; reruns resume")
    parser.add_argument("--count", type=int, default=30000, help="scenes in the data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=1600)
    parser.add_argument("--vae-batch", type=int, default=32, help="for 32-pixel crops; half of it for 64-pixel ones")
    parser.add_argument("--unet-steps", type=int, default=3000)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--min-snr", type=float, default=5.0, help="min-SNR loss weighting gamma (0: plain MSE)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--export", type=Path, help="write the diffusers folder here when done")
    parser.add_argument("--init-from", type=Path, help="an exported model folder to go on training from (when --work holds no checkpoints yet)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.init_from:
        seed_from_export(args.init_from, args.work)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    images, captions = load_data(args.work, args.count, args.seed)
    vae = train_vae(args.work, images, args.vae_steps, args.vae_batch, args.seed)
    latents = encode_latents(args.work, vae, images)
    unet, text_encoder = train_unet(args.work, latents, captions, args.unet_steps, args.unet_batch, args.seed, args.lr,
                                   args.min_snr)
    if args.export:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        card = {"scenes": args.count, "seed": args.seed, "vae_steps": args.vae_steps, "vae_batch": args.vae_batch,
                "unet_steps": args.unet_steps, "unet_batch": args.unet_batch, "lr": args.lr, "min_snr": args.min_snr, "device": device,
                "threads": torch.get_num_threads()}
        if args.init_from:
            card["continued_from"] = training_record(args.init_from)
        export(args.export, vae, unet, text_encoder, latents[2], card)
        _log(f"exported to {args.export} ({time.perf_counter() - started:.0f} s this run)")


if __name__ == "__main__":
    main()
