"""Where and in which precision the model runs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceConfig:
    device: torch.device
    dtype: torch.dtype  # UNet and text encoders
    vae_dtype: torch.dtype  # the VAE: fp16 overflows in SDXL's VAE, so bf16 or fp32 there

    @property
    def generator_device(self) -> torch.device:
        return self.device


def choose_devices(use_cpu: list[str] | None = None, precision: str = "autocast", no_half: bool = False,
                   no_half_vae: bool = False) -> DeviceConfig:
    """A1111's rules: CUDA when present (unless `--use-cpu all`/`sd`), fp16 there, fp32 on CPU
    or with `--precision full` / `--no-half`."""
    use_cpu = [name.lower() for name in (use_cpu or [])]
    if torch.cuda.is_available() and not {"all", "sd"} & set(use_cpu):
        device = torch.device("cuda")
        full = precision == "full" or no_half
        dtype = torch.float32 if full else torch.float16
        if full or no_half_vae:
            vae_dtype = torch.float32
        else:
            vae_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return DeviceConfig(device, dtype, vae_dtype)
    return DeviceConfig(torch.device("cpu"), torch.float32, torch.float32)
