"""A loaded Stable Diffusion model: its parts, and the facts that vary by family."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class ModelFamily:
    name: str  # "sd1", "sd2", "sdxl"
    label: str  # shown to users
    default_size: int  # native resolution, pixels per side
    text_encoders: int  # 1, or 2 for SDXL (CLIP-L and OpenCLIP bigG)


SD1 = ModelFamily("sd1", "SD 1.x", 512, 1)
SD2 = ModelFamily("sd2", "SD 2.x", 512, 1)  # 768 for the v-prediction models
SDXL = ModelFamily("sdxl", "SDXL", 1024, 2)
FAMILIES = {family.name: family for family in (SD1, SD2, SDXL)}


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """The noise schedule every SD 1.x/2.x/XL checkpoint was trained with.

    Built in float64 and stored as float32, as A1111 (LDM/SGM) holds it; diffusers builds
    it in float32, which moves the sigmas by a few ulps.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


@dataclass
class SDModel:
    """Everything the generation code needs from a checkpoint, already on its device."""

    family: ModelFamily
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoders: list  # CLIPTextModel; for SDXL also CLIPTextModelWithProjection
    tokenizers: list  # one CLIPTokenizer per text encoder
    alphas_cumprod: torch.Tensor  # float32, on the CPU; 1000 training timesteps
    prediction_type: str = "epsilon"  # or "v_prediction"
    name: str = "unnamed"  # the checkpoint's title, as in the infotext "Model:" field
    path: Path | None = None
    sha256: str | None = None  # full hex digest, when known
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    default_size: int = 512
    # A separate VAE file in use (models/vae.py): its path and sha256, and the checkpoint's own VAE
    # kept to switch back to. All None while the checkpoint's own VAE is used.
    vae_file: Path | None = None
    vae_sha256: str | None = None
    own_vae: Any = None
    # The model's own metadata (`webui.json` in a diffusers folder): {"demo": bool, "defaults": {"width":
    # ..., "steps": ...}, "training": {...}}; empty for ordinary checkpoints.
    metadata: dict = field(default_factory=dict)

    @property
    def is_demo(self) -> bool:
        return bool(self.metadata.get("demo"))

    @property
    def is_inpainting(self) -> bool:
        return self.unet.config.in_channels == 9

    @property
    def short_hash(self) -> str | None:
        """A1111's "Model hash": the first 10 hex digits of the sha256."""
        return self.sha256[:10] if self.sha256 else None

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)
