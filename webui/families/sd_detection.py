"""Tell SD 1.x, SD 2.x and SDXL checkpoints apart, and pick the bundled diffusers config for each.

Single files are judged from their keys and the relative shapes of a few tensors (never absolute sizes,
so the same rules hold for the tiny test models): which text encoder layout is present, whether the
UNet's cross-attention width matches it, and the UNet's input channels (9 = inpainting).

SD 2.x v-prediction versus epsilon leaves no trace in the keys. A1111 settles it by running the UNet once
on a constant input; we run it once too, see `probe_prediction_type`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import torch

from webui.families import SD1, SD2, SDXL, ModelFamily, UnsupportedCheckpoint

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "models" / "configs"

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_L = "cond_stage_model.transformer."  # SD 1.x: OpenAI CLIP ViT-L/14 in transformers layout
OPEN_CLIP = "cond_stage_model.model."  # SD 2.x: OpenCLIP ViT-H/14
SDXL_CLIP_L = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP = "conditioner.embedders.1.model."  # OpenCLIP ViT-bigG/14
REFINER_OPEN_CLIP = "conditioner.embedders.0.model."  # the SDXL refiner has only bigG, as embedder 0

# A key some SDXL v-prediction fine-tunes carry (with "ztsnr"); A1111 reads it the same way.
V_PRED_MARKER = "v_pred"


@dataclass(frozen=True)
class Detection:
    family: ModelFamily
    inpainting: bool
    prediction_type: str  # "epsilon" or "v_prediction"
    config_dir: Path  # bundled diffusers config folder (or the diffusers folder itself)
    # True when the keys cannot tell epsilon from v (SD 2.x): the loader runs `probe_prediction_type`
    # on the built UNet and then calls `settle_prediction_type`.
    needs_probe: bool = False


def config_dir_for(family: ModelFamily, inpainting: bool, prediction_type: str) -> Path:
    if inpainting:
        return CONFIGS_DIR / f"{family.name}-inpainting"
    if family is SD2 and prediction_type == "v_prediction":
        return CONFIGS_DIR / "sd2-v"
    return CONFIGS_DIR / family.name


def _has_prefix(keys, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)


def _width(state_dict: Mapping, *keys: str) -> int:
    """Feature width of the first of `keys` present (the token embedding of a text encoder)."""
    for key in keys:
        if key in state_dict:
            return int(state_dict[key].shape[-1])
    raise UnsupportedCheckpoint(f"the text encoder weights are incomplete ({keys[0]} is missing)")


def _context_width(state_dict: Mapping) -> int | None:
    """The UNet's cross-attention input width: what the text encoder(s) must produce."""
    for key, value in state_dict.items():
        if key.startswith(UNET) and key.endswith(".attn2.to_k.weight"):
            return int(value.shape[1])
    return None


def _what_is_it(keys: list[str]) -> str:
    """A hint for files that are not SD checkpoints, so the error says where they belong."""
    sample = keys[:2000]
    if any("lora_" in k or ".lora_down." in k or ".lora_A." in k for k in sample):
        return "it looks like a LoRA; put it in models/Lora"
    if any(k.startswith(("encoder.", "decoder.")) for k in sample) and not any(k.startswith(UNET) for k in sample):
        return "it looks like a VAE; put it in models/VAE"
    if any(k.startswith(("control_model.", "controlnet_")) for k in sample):
        return "it looks like a ControlNet"
    if any("double_blocks." in k for k in sample):
        return "it looks like a FLUX model"
    if any("joint_blocks." in k for k in sample):
        return "it looks like a Stable Diffusion 3 model"
    if any(k.startswith(("down_blocks.", "mid_block.")) for k in sample):
        return "it looks like a lone UNet in diffusers layout; use a full checkpoint or a diffusers folder"
    return "unrecognised key layout"


def detect(state_dict: Mapping[str, torch.Tensor]) -> Detection:
    """Family, inpainting and (where the keys tell) prediction type of an original-layout checkpoint."""
    keys = list(state_dict.keys())
    conv_in = UNET + "input_blocks.0.0.weight"
    if conv_in not in state_dict:
        raise UnsupportedCheckpoint(f"not a Stable Diffusion checkpoint: {_what_is_it(keys)}")

    if _has_prefix(keys, SDXL_OPEN_CLIP) and _has_prefix(keys, SDXL_CLIP_L):
        family = SDXL
        text_width = (_width(state_dict, SDXL_CLIP_L + "text_model.embeddings.token_embedding.weight")
                      + _width(state_dict, SDXL_OPEN_CLIP + "token_embedding.weight"))
    elif _has_prefix(keys, REFINER_OPEN_CLIP):
        raise UnsupportedCheckpoint("the SDXL refiner is not supported; use an SDXL base checkpoint")
    elif _has_prefix(keys, OPEN_CLIP):
        family = SD2
        text_width = _width(state_dict, OPEN_CLIP + "token_embedding.weight")
    elif _has_prefix(keys, CLIP_L):
        family = SD1
        # Some early files lack the "text_model." level; the converter accepts both.
        text_width = _width(state_dict, CLIP_L + "text_model.embeddings.token_embedding.weight",
                            CLIP_L + "embeddings.token_embedding.weight")
    else:
        raise UnsupportedCheckpoint("no text encoder weights found (a UNet-only file?); a full checkpoint is needed")

    context = _context_width(state_dict)
    if context != text_width:
        expects = f"{context}-wide text features" if context else "no text features (no cross-attention)"
        raise UnsupportedCheckpoint(
            f"the UNet expects {expects} but the {family.label} text encoder gives {text_width}; unknown architecture"
        )
    if not _has_prefix(keys, VAE):
        raise UnsupportedCheckpoint("it has no VAE weights (first_stage_model.*); a full checkpoint is needed")

    in_channels = int(state_dict[conv_in].shape[1])
    if in_channels not in (4, 9):
        raise UnsupportedCheckpoint(
            f"its UNet takes {in_channels} input channels; only txt2img (4) and inpainting (9) models are supported"
        )
    inpainting = in_channels == 9

    if V_PRED_MARKER in state_dict:
        prediction_type, needs_probe = "v_prediction", False
    else:
        # SD 2.x shipped both kinds with identical keys (512-base: epsilon, 768-v: v); the only SD 2.x
        # inpainting model is epsilon, as A1111 also assumes.
        prediction_type, needs_probe = "epsilon", family is SD2 and not inpainting
    return Detection(family, inpainting, prediction_type, config_dir_for(family, inpainting, prediction_type), needs_probe)


def settle_prediction_type(detection: Detection, prediction_type: str) -> Detection:
    """The detection once the probe has spoken."""
    config_dir = config_dir_for(detection.family, detection.inpainting, prediction_type)
    return replace(detection, prediction_type=prediction_type, config_dir=config_dir, needs_probe=False)


def detect_diffusers_folder(folder: Path) -> Detection:
    """Family etc. of a diffusers folder, from its own config files."""

    def read(relative: str) -> dict:
        try:
            return json.loads((folder / relative).read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise UnsupportedCheckpoint(f"not a complete diffusers folder: {relative} is missing") from error
        except (OSError, ValueError) as error:
            raise UnsupportedCheckpoint(f"unreadable {relative} in diffusers folder: {error}") from error

    index = read("model_index.json")
    pipeline = str(index.get("_class_name", ""))
    if not pipeline.startswith("StableDiffusion"):
        from webui.families import FAMILIES

        known = ", ".join(family.label for family in FAMILIES.values())
        raise UnsupportedCheckpoint(f"{pipeline or 'this pipeline'} is not a pipeline this WebUI loads ({known})")
    if "XL" in pipeline and index.get("text_encoder", [None])[0] is None:
        raise UnsupportedCheckpoint("the SDXL refiner is not supported; use an SDXL base model")
    unet, scheduler, text = read("unet/config.json"), read("scheduler/scheduler_config.json"), read("text_encoder/config.json")
    if unet.get("_class_name") != "UNet2DConditionModel":
        raise UnsupportedCheckpoint(f"its denoiser is a {unet.get('_class_name')}, not an SD UNet")
    if "XL" in pipeline:
        family = SDXL
    else:
        # OpenCLIP ViT-H (SD 2.x) uses GELU; OpenAI's CLIP ViT-L (SD 1.x) uses quick GELU.
        family = SD2 if text.get("hidden_act") == "gelu" else SD1
    in_channels = unet.get("in_channels", 4)
    if in_channels not in (4, 9):
        raise UnsupportedCheckpoint(f"its UNet takes {in_channels} input channels; only 4 and 9 are supported")
    prediction_type = scheduler.get("prediction_type", "epsilon")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise UnsupportedCheckpoint(f"prediction type {prediction_type!r} is not supported")
    return Detection(family, in_channels == 9, prediction_type, folder)


# ---- SD 2.x: epsilon or v? -------------------------------------------------------------------------------

PROBE_TIMESTEP = 999  # almost pure noise: alpha_bar = 0.0047 on the SD schedule
PROBE_LATENT = (1, 4, 16, 16)
PROBE_THRESHOLD = 0.5  # relative distance from the epsilon answer; epsilon models land near 0.1, v near 1


@torch.no_grad()
def probe_prediction_type(unet: Callable, context: torch.Tensor, seed: int = 0) -> str:
    """Run the UNet once on pure noise and see whether its answer is the one an epsilon model must give.

    At t=999 the latent x_t = a*x0 + s*eps is noise with a faint trace of the image (a = sqrt(alpha_bar)
    = 0.07, s = 1.0). An epsilon model must answer eps = (x_t - a*x0)/s, which is x_t itself up to a few
    percent, whatever the image. A v model answers v = a*eps - s*x0 = (a*x_t - x0)/s: at most 7% of x_t
    plus minus its guess of the clean image, so it is about as far from x_t as x_t is from zero, whatever
    that guess is. We feed seeded Gaussian noise and measure |output - x_t| / |x_t|.

    A1111 asks the same question with a constant 0.5 latent and a threshold on the mean output; pure noise
    is what the model actually sees at t=999, and the relative distance needs no tuning per model.

    `unet(sample, timestep, encoder_hidden_states=context)` must return an object with `.sample`,
    like diffusers' UNet2DConditionModel; `context` is the text conditioning (e.g. the empty prompt).
    """
    parameter = next(iter(unet.parameters()), None) if hasattr(unet, "parameters") else None
    device = parameter.device if parameter is not None else context.device
    dtype = parameter.dtype if parameter is not None else context.dtype
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(PROBE_LATENT, generator=generator)
    timestep = torch.tensor([PROBE_TIMESTEP], device=device)
    output = unet(noise.to(device, dtype), timestep, encoder_hidden_states=context.to(device, dtype)).sample
    distance = (output.float().cpu() - noise).norm() / noise.norm()
    if not torch.isfinite(distance):
        raise ValueError("the UNet returned non-finite values")
    return "epsilon" if distance.item() < PROBE_THRESHOLD else "v_prediction"
