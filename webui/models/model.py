"""A loaded model: its parts, and the facts its family (webui/families) needs to run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class SDModel:
    """Everything the generation code needs from a checkpoint, already on its device."""

    family: Any  # a webui.families.ModelFamily
    unet: Any  # the denoising network: a diffusers UNet2DConditionModel, or the family's transformer
    vae: Any  # diffusers AutoencoderKL
    text_encoders: list  # CLIPTextModel(s) in the family's order, then T5 or an LLM where the family has one
    tokenizers: list  # one per text encoder
    alphas_cumprod: torch.Tensor | None = None  # UNet families: float32, on the CPU; 1000 training timesteps
    prediction_type: str = "epsilon"  # or "v_prediction"; "flow" for the flow-matching families
    schedule_config: dict = field(default_factory=dict)  # flow families: the scheduler config (shift, ...)
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
    # Memory modes (webui/memory.py): where each part sits while a job runs; None: all on `device`.
    placement: Any = None
    memory_options: Any = None
    fast_path: Any = None  # webui/fast_path.py CompiledNetwork while --compile is on
    runtime_options: Any = None  # the webui/runtime.py RuntimeOptions applied (memory mode, FP8, compile)

    @property
    def is_demo(self) -> bool:
        return bool(self.metadata.get("demo"))

    @property
    def is_inpainting(self) -> bool:
        """An inpainting model (SD's 9-channel UNets, Flux Fill): it takes the masked image and the mask too."""
        return self.family.is_inpainting_model(self)

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
