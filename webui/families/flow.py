"""What the flow-matching transformer families (SD3, Flux, Chroma) share.

They predict a velocity v = noise - x0 on sigmas in [0, 1], where x = (1 - sigma) * x0 + sigma * noise,
so the denoised estimate is x - sigma * v and every k-diffusion ODE sampler runs on them unchanged
(Euler, Heun, LMS, DPM2, DPM++ 2M); ancestral samplers need the flow variant of their noise step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .base import Defaults, ModelFamily, UnsupportedCheckpoint

# Samplers that make sense on flow sigmas (the ODE solvers, and Euler a with its flow noise step).
FLOW_SAMPLERS = ("Euler", "Euler a", "Heun", "DPM++ 2M", "LMS", "DPM2")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedCheckpoint(f"not a complete diffusers folder: {path.parent.name}/{path.name} is missing") from None
    except (OSError, ValueError) as error:
        raise UnsupportedCheckpoint(f"unreadable {path.name}: {error}") from None


class FlowFamily(ModelFamily):
    flow = True
    samplers = FLOW_SAMPLERS
    size_multiple = 16  # VAE factor 8 x 2x2 patches
    default_size = 1024
    defaults = Defaults(steps=20, cfg_scale=5.0, sampler_name="Euler")
    pipelines: tuple[str, ...] = ()  # model_index.json `_class_name`s this family loads
    # The diffusers folder's parts, in SDModel's order: (text encoder subfolder, tokenizer subfolder, what it is)
    text_parts: tuple[tuple[str, str, str], ...] = ()

    def claims_folder(self, index, text_config=None) -> bool:
        return str(index.get("_class_name", "")) in self.pipelines

    def noised(self, latent, noise, sigma):
        return latent * (1 - sigma) + noise * sigma

    def velocity_to_denoised(self, x, sigma, velocity):
        return x - velocity.to(x.dtype) * sigma.to(x.dtype).view(-1, 1, 1, 1)

    def shift_for(self, model, width: int, height: int) -> float:
        """The schedule's shift: the scheduler config's `shift`, or Flux's resolution-dependent exp(mu)."""
        config = model.schedule_config
        if not config.get("use_dynamic_shifting"):
            return float(config.get("shift", 1.0))
        tokens = (height // 16) * (width // 16)  # image tokens after the VAE (8x) and 2x2 packing
        low, high = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        mu = base + (top - base) * (tokens - low) / (high - low)
        return math.exp(mu)

    def noise_schedule(self, model, width, height):
        from webui.generation.samplers import FlowSchedule

        return FlowSchedule(self.shift_for(model, width, height))

    def infotext_params(self, model, width, height, distilled_cfg_scale):
        shift = self.shift_for(model, width, height)
        return {"Shift": round(shift, 4)} if abs(shift - 1) > 1e-6 else {}

    # ---- loading a diffusers folder ---------------------------------------------------------------------
    def load_folder(self, folder: Path, device, dtype, vae_dtype) -> dict:
        import diffusers
        import transformers

        index = read_json(folder / "model_index.json")

        def component(name: str):
            entry = index.get(name)
            if not isinstance(entry, list) or len(entry) != 2 or entry[1] is None or not (folder / name).is_dir():
                return None
            library = diffusers if entry[0] == "diffusers" else transformers
            cls = getattr(library, str(entry[1]), None)
            if cls is None:
                raise UnsupportedCheckpoint(f"{name}: {entry[1]} is not a class this version of {entry[0]} has")
            return cls

        def load(name: str, part_dtype):
            cls = component(name)
            if cls is None:
                raise UnsupportedCheckpoint(f"{name}/ is missing from the folder (model_index.json must list it)")
            if cls.__module__.startswith("diffusers"):
                return cls.from_pretrained(folder, subfolder=name, local_files_only=True, torch_dtype=part_dtype)
            return cls.from_pretrained(folder / name, local_files_only=True, dtype=part_dtype)

        transformer, vae = load("transformer", dtype), load("vae", vae_dtype)
        encoders, tokenizers = [], []
        for encoder_name, tokenizer_name, what in self.text_parts:
            if component(encoder_name) is None:
                raise UnsupportedCheckpoint(f"its {what} text encoder is missing: {self.label} needs "
                                            f"{encoder_name}/ (config and weights) in the folder")
            if component(tokenizer_name) is None:
                raise UnsupportedCheckpoint(f"its {what} tokenizer is missing: put the tokenizer files in "
                                            f"{tokenizer_name}/ inside the folder")
            encoders.append(load(encoder_name, dtype))
            tokenizers.append(component(tokenizer_name).from_pretrained(folder / tokenizer_name, local_files_only=True))
        schedule_config = read_json(folder / "scheduler" / "scheduler_config.json")
        return dict(family=self, unet=transformer, vae=vae, text_encoders=encoders, tokenizers=tokenizers,
                    schedule_config=schedule_config, prediction_type="flow",
                    default_size=self.native_size(transformer, vae))

    def native_size(self, transformer, vae) -> int:
        sample_size = getattr(transformer.config, "sample_size", None)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return int(sample_size) * factor if sample_size else self.default_size
