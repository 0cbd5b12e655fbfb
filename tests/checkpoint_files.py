"""Write test checkpoints from the tiny models: diffusers folders and original-layout single files.

Real-world checkpoints (A1111's models/Stable-diffusion) use the original LDM/CompVis key layout. diffusers
only converts LDM -> diffusers, so to make such files from our diffusers-layout tiny models we map the other
way here. The rules mirror the layouts themselves:

UNet ("model.diffusion_model."), with L = layers_per_block:
  down_blocks.b.resnets.l / .attentions.l  -> input_blocks.(1 + b(L+1) + l).0 / .1
  down_blocks.b.downsamplers.0.conv        -> input_blocks.((b+1)(L+1)).0.op
  mid_block.resnets.0, attentions.0, resnets.1 -> middle_block.0, .1, .2
  up_blocks.b.resnets.l / .attentions.l    -> output_blocks.(b(L+1) + l).0 / .1
  up_blocks.b.upsamplers.0.conv            -> output_blocks.(b(L+1) + L).1 (or .2 after an attention).conv
  resnet parts: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut
             -> in_layers.0, in_layers.2, emb_layers.1, out_layers.0, out_layers.3, skip_connection
VAE ("first_stage_model."): down_blocks.i -> down.i (block/downsample), decoder up_blocks.i -> up.(n-1-i),
  mid_block -> mid.block_1 / attn_1 / block_2, attention projections are 1x1 convolutions.
CLIP ViT-L: the transformers layout under "cond_stage_model.transformer.text_model." (SDXL:
  "conditioner.embedders.0.transformer.text_model.").
OpenCLIP (SD2 "cond_stage_model.model.", SDXL "conditioner.embedders.1.model."): q/k/v fused into
  in_proj, fc1/fc2 -> c_fc/c_proj, layer_norm1/2 -> ln_1/2, text_projection stored transposed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from webui.models.model import SDModel

# ---- diffusers -> LDM key mapping --------------------------------------------------------------------------

_RESNET_PARTS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                 "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_FLAT = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET_PARTS[part]}.{tail}"


def unet_to_ldm(state_dict: dict, config) -> dict:
    per_block = config["layers_per_block"] + 1
    up_with_attention = {i for i, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}
    out = {}
    for key, value in state_dict.items():
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + b * per_block + layer
            new = f"input_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * per_block}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = b * per_block + layer
            new = f"output_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            b = int(m[1])
            slot = 2 if b in up_with_attention else 1
            new = f"output_blocks.{b * per_block + per_block - 1}.{slot}.conv.{m[2]}"
        else:
            module, _, param = key.rpartition(".")
            new = f"{_UNET_FLAT[module]}.{param}"
        out["model.diffusion_model." + new] = value
    return out


_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state_dict: dict, config) -> dict:
    up_count = len(config["up_block_types"])
    out = {}
    for key, value in state_dict.items():
        new = key
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{up_count - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{up_count - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", key):
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
            if value.dim() == 2:  # linear in diffusers, 1x1 convolution in LDM
                value = value[:, :, None, None]
        elif m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            new = f"{m[1]}.norm_out.{m[2]}"
        new = new.replace("conv_shortcut", "nin_shortcut")
        out["first_stage_model." + new] = value
    return out


def _flat_text_keys(state_dict: dict) -> dict:
    """transformers' CLIP keys with the "text_model." level, whatever version flattened it or not."""
    return {k if k.startswith("text_model.") or k == "text_projection.weight" else "text_model." + k: v
            for k, v in state_dict.items()}


def clip_to_ldm(state_dict: dict, prefix: str) -> dict:
    return {prefix + key: value for key, value in _flat_text_keys(state_dict).items()}


_OPEN_CLIP_PARTS = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def open_clip_to_ldm(state_dict: dict, prefix: str, text_projection: torch.Tensor | None = None) -> dict:
    """OpenCLIP layout. `text_projection` (diffusers orientation) is for SD2, whose model has none."""
    weights = {k.removeprefix("text_model."): v for k, v in _flat_text_keys(state_dict).items()}
    out = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in weights.items():
        if key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out["ln_final." + key.split(".")[-1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            fused.setdefault(f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = value
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(self_attn\.out_proj|layer_norm1|layer_norm2|mlp\.fc1|mlp\.fc2)\.(.+)", key):
            out[f"transformer.resblocks.{m[1]}.{_OPEN_CLIP_PARTS[m[2]]}.{m[3]}"] = value
        else:
            raise KeyError(f"no OpenCLIP name for {key}")
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if text_projection is not None:
        out["text_projection"] = text_projection.T
    return {prefix + key: value for key, value in out.items()}


def ldm_state_dict(model: SDModel) -> dict[str, torch.Tensor]:
    """The whole model as one original-layout state dict (independent, contiguous tensors)."""
    sd = {**unet_to_ldm(model.unet.state_dict(), model.unet.config), **vae_to_ldm(model.vae.state_dict(), model.vae.config)}
    family = model.family.name
    encoders = [encoder.state_dict() for encoder in model.text_encoders]
    if family == "sd1":
        sd.update(clip_to_ldm(encoders[0], "cond_stage_model.transformer."))
    elif family == "sd2":
        # Real SD2 files carry ViT-H's projection although SD never uses it; loaders must skip it.
        hidden = model.text_encoders[0].config.hidden_size
        projection = torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(1))
        sd.update(open_clip_to_ldm(encoders[0], "cond_stage_model.model.", text_projection=projection))
    else:
        sd.update(clip_to_ldm(encoders[0], "conditioner.embedders.0.transformer."))
        sd.update(open_clip_to_ldm(encoders[1], "conditioner.embedders.1.model."))
    return {key: value.detach().contiguous().clone() for key, value in sd.items()}


# ---- files on disk -----------------------------------------------------------------------------------------

def write_safetensors(model: SDModel, path: Path, extra: dict | None = None) -> Path:
    save_file({**ldm_state_dict(model), **(extra or {})}, str(path))
    return path


def write_ckpt(model: SDModel, path: Path, extra: dict | None = None) -> Path:
    """A .ckpt as training code saved them: the weights under "state_dict", plus whatever `extra` adds."""
    torch.save({"state_dict": ldm_state_dict(model), **(extra or {})}, path)
    return path


def _scheduler_config(model: SDModel) -> dict:
    return {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": 0.012, "num_train_timesteps": 1000, "prediction_type": model.prediction_type,
            "steps_offset": 1, "timestep_spacing": "leading"}


def _model_index(model: SDModel) -> dict:
    inpainting = model.unet.config.in_channels == 9
    if model.family.name == "sdxl":
        index = {"_class_name": "StableDiffusionXLInpaintPipeline" if inpainting else "StableDiffusionXLPipeline",
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer_2": ["transformers", "CLIPTokenizer"]}
    else:
        index = {"_class_name": "StableDiffusionInpaintPipeline" if inpainting else "StableDiffusionPipeline",
                 "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    return {**index, "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]}


def _encoder_folders(model: SDModel) -> list[str]:
    return ["text_encoder", "text_encoder_2"][: len(model.text_encoders)]


def write_config_dir(model: SDModel, folder: Path) -> Path:
    """A diffusers config folder (no weights) that fits the tiny model: `load_checkpoint(config_dir=...)`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(_model_index(model), indent=1))
    model.unet.save_config(folder / "unet")
    model.vae.save_config(folder / "vae")
    for encoder, name in zip(model.text_encoders, _encoder_folders(model)):
        encoder.config.save_pretrained(folder / name)
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(_scheduler_config(model), indent=1))
    return folder


def write_diffusers_folder(model: SDModel, folder: Path) -> Path:
    """A complete diffusers folder: configs plus each part's `save_pretrained` weights and tokenizers."""
    write_config_dir(model, folder)
    model.unet.save_pretrained(folder / "unet")
    model.vae.save_pretrained(folder / "vae")
    for encoder, name in zip(model.text_encoders, _encoder_folders(model)):
        encoder.save_pretrained(folder / name)
    for tokenizer, name in zip(model.tokenizers, ["tokenizer", "tokenizer_2"]):
        tokenizer.save_pretrained(folder / name)
    return folder
