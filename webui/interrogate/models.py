"""Where interrogate's two models come from, and loading them offline.

A BLIP caption model and a CLIP model, each a Hugging Face-format folder (config.json, model.safetensors
and the processor's files): `models/BLIP/<folder>` and `models/clip_interrogator/<folder>` under the data
dir's models folder, else the same repositories in the user's local Hugging Face cache. Nothing is
downloaded, and only safetensors weights are read (no pickles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BLIP_FOLDER = "BLIP"
CLIP_FOLDER = "clip_interrogator"
# The repositories looked for in the local Hugging Face cache, best first (A1111 uses BLIP-large and ViT-L/14).
BLIP_REPOS = ("Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base")
CLIP_REPOS = ("openai/clip-vit-large-patch14",)


class InterrogateError(Exception):
    """Interrogation cannot run; the message says why and what to do."""


class ModelsMissing(InterrogateError):
    """A model folder is not where it is looked for."""


class ModelUnreadable(InterrogateError):
    """A model folder was found but could not be loaded."""


@dataclass(frozen=True)
class ModelSpec:
    what: str  # shown in messages: "BLIP caption model"
    folder: str  # under the models dir
    model_type: str  # config.json's "model_type"
    architecture: str  # the class it loads as; a folder that names other architectures holds another head
    repos: tuple[str, ...]  # looked for in the Hugging Face cache


BLIP = ModelSpec("BLIP caption model", BLIP_FOLDER, "blip", "BlipForConditionalGeneration", BLIP_REPOS)
CLIP = ModelSpec("CLIP model", CLIP_FOLDER, "clip", "CLIPModel", CLIP_REPOS)


def holds(folder: Path, spec: ModelSpec) -> bool:
    """Whether folder/config.json is of spec's model type and architecture (one that names none is taken)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or config.get("model_type") != spec.model_type:
        return False
    architectures = config.get("architectures") or []
    return not architectures or spec.architecture in architectures


def _cached_repo(repo: str, hf_cache: Path | None) -> Path | None:
    """The snapshot folder of `repo` in the local Hugging Face cache, if its config is there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", cache_dir=hf_cache)
    return Path(found).parent if isinstance(found, str) else None


def find_model(spec: ModelSpec, models_dir: Path, hf_cache: Path | None = None) -> Path | None:
    """The first folder (by name) under models/<spec.folder> whose config.json is of the right model type and
    architecture (the folder itself may be one), else the first of spec.repos in the Hugging Face cache; None if
    neither."""
    root = models_dir / spec.folder
    candidates = [root, *sorted(path for path in root.iterdir() if path.is_dir())] if root.is_dir() else []
    for folder in candidates:
        if holds(folder, spec):
            return folder
    for repo in spec.repos:
        if (folder := _cached_repo(repo, hf_cache)) is not None and holds(folder, spec):
            return folder
    return None


def missing_message(missing: list[ModelSpec], models_dir: Path) -> str:
    """Where each missing model goes, first (a notice may be cut short), then what such a folder holds."""
    places = " and ".join(f"a {spec.what} in a folder of its own under {models_dir / spec.folder}" for spec in missing)
    copies = " and ".join(spec.repos[0] for spec in missing)
    return (f"Interrogate CLIP needs {places}: Hugging Face-format folders (config.json, model.safetensors and the "
            f"processor's files), such as copies of {copies}. The local Hugging Face cache is looked in too; "
            "nothing is downloaded.")


def find_models(models_dir: Path, hf_cache: Path | None = None) -> tuple[Path, Path]:
    """(BLIP folder, CLIP folder); ModelsMissing naming every one that is not found and where to put it."""
    found = {spec: find_model(spec, models_dir, hf_cache) for spec in (BLIP, CLIP)}
    missing = [spec for spec, folder in found.items() if folder is None]
    if missing:
        raise ModelsMissing(missing_message(missing, models_dir))
    return found[BLIP], found[CLIP]


def load_blip(folder: Path, dtype):
    """(processor, model) of a BLIP caption folder, offline and from safetensors only."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    return _load(folder, BLIP, lambda: (BlipProcessor.from_pretrained(folder, local_files_only=True),
                                        BlipForConditionalGeneration.from_pretrained(
                                            folder, local_files_only=True, use_safetensors=True, dtype=dtype)))


def load_clip(folder: Path, dtype):
    """(processor, model) of a CLIP folder, offline and from safetensors only."""
    from transformers import CLIPModel, CLIPProcessor

    return _load(folder, CLIP, lambda: (CLIPProcessor.from_pretrained(folder, local_files_only=True),
                                        CLIPModel.from_pretrained(folder, local_files_only=True,
                                                                  use_safetensors=True, dtype=dtype)))


def _load(folder: Path, spec: ModelSpec, load):
    try:
        processor, model = load()
    except Exception as error:  # a broken or incomplete folder: say which and why, whatever transformers raised
        raise ModelUnreadable(f"the {spec.what} in {folder} could not be loaded ({type(error).__name__}: {error}); "
                              "it needs config.json, model.safetensors and the processor's files") from error
    return processor, model.eval().requires_grad_(False)
