"""Interrogate CLIP: a BLIP caption of the image, then the words of each category list that CLIP finds
closest to it, as A1111 builds its prompt ("a caption, medium, artist, movement, flavor, ...")."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .categories import Category, load_categories
from .models import CLIP_FOLDER, find_models, load_blip, load_clip

TEXT_BATCH = 256  # list entries encoded by CLIP at once


@dataclass(frozen=True)
class InterrogateSettings:
    """A1111's interrogate options, with its defaults."""

    num_beams: int = 1  # interrogate_clip_num_beams
    min_length: int = 24  # interrogate_clip_min_length (caption tokens)
    max_length: int = 48  # interrogate_clip_max_length
    dict_limit: int = 1500  # interrogate_clip_dict_limit: lines read per list; 0: all
    skip_categories: tuple[str, ...] = ()  # interrogate_clip_skip_categories
    return_ranks: bool = False  # interrogate_return_ranks: "(word:0.123)" instead of "word"
    keep_models_in_memory: bool = False  # interrogate_keep_models_in_memory: off, they wait in RAM (CPU)

    @classmethod
    def from_options(cls, options) -> "InterrogateSettings":
        """From anything with .get(key, default) (the WebUI's Options); unknown keys keep A1111's defaults."""
        d = cls()
        return cls(int(options.get("interrogate_clip_num_beams", d.num_beams)),
                   int(options.get("interrogate_clip_min_length", d.min_length)),
                   int(options.get("interrogate_clip_max_length", d.max_length)),
                   int(options.get("interrogate_clip_dict_limit", d.dict_limit)),
                   tuple(options.get("interrogate_clip_skip_categories", d.skip_categories) or ()),
                   bool(options.get("interrogate_return_ranks", d.return_ranks)),
                   bool(options.get("interrogate_keep_models_in_memory", d.keep_models_in_memory)))


class Interrogator:
    """Loads the models on first use and keeps them (on the CPU between calls unless told to keep them on the
    device); one interrogation at a time, since the models are shared."""

    def __init__(self, models_dir: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 hf_cache: Path | None = None):
        self.models_dir = Path(models_dir)
        self.device, self.dtype, self.hf_cache = torch.device(device), dtype, hf_cache
        self._lock = threading.Lock()
        self._blip = self._clip = None  # (folder, processor, model)
        self._text_features: dict[tuple, torch.Tensor] = {}  # (clip folder, list file, items) -> features

    def interrogate(self, image: Image.Image, settings: InterrogateSettings = InterrogateSettings()) -> str:
        """The caption and the best matches of every category, joined with ", "."""
        image = image.convert("RGB")
        with self._lock, torch.inference_mode():
            blip_folder, clip_folder = find_models(self.models_dir, self.hf_cache)
            try:
                caption = self._caption(blip_folder, image, settings)
                features = self._image_features(clip_folder, image)
                words = []
                for category in load_categories(self.models_dir / CLIP_FOLDER, settings.skip_categories):
                    words += self._best_matches(clip_folder, category, features, settings)
            finally:
                if not settings.keep_models_in_memory:
                    self._park()
        return ", ".join([caption, *words])

    def unload(self) -> None:
        """Free the device's memory: the models wait in RAM until the next interrogation."""
        with self._lock:
            self._park()

    def _caption(self, folder: Path, image: Image.Image, settings: InterrogateSettings) -> str:
        if self._blip is None or self._blip[0] != folder:
            self._blip = (folder, *load_blip(folder, self.dtype))
        _, processor, model = self._blip
        model.to(self.device)
        inputs = processor(images=image, return_tensors="pt").to(self.device, self.dtype)
        tokens = model.generate(**inputs, num_beams=max(settings.num_beams, 1), min_length=settings.min_length,
                                max_length=max(settings.max_length, settings.min_length))
        return processor.decode(tokens[0], skip_special_tokens=True).strip()

    def _clip_model(self, folder: Path):
        if self._clip is None or self._clip[0] != folder:
            self._clip = (folder, *load_clip(folder, self.dtype))
            self._text_features.clear()
        _, processor, model = self._clip
        return processor, model.to(self.device)

    def _image_features(self, folder: Path, image: Image.Image) -> torch.Tensor:
        processor, model = self._clip_model(folder)
        pixels = processor(images=image, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        return _normalized(_projected(model.get_image_features(pixel_values=pixels)))

    def _best_matches(self, folder: Path, category: Category, image_features: torch.Tensor,
                      settings: InterrogateSettings) -> list[str]:
        """A1111's ranking: a softmax over 100 x cosine similarity; the top_count best, with their share."""
        items = category.items[: settings.dict_limit] if settings.dict_limit > 0 else category.items
        text_features = self._list_features(folder, category, items)
        shares = (100.0 * image_features.float() @ text_features.float().T).softmax(dim=-1)[0]
        best = shares.topk(min(category.top_count, len(items)))
        if settings.return_ranks:
            return [f"({items[i]}:{share:.3f})" for share, i in zip(best.values.tolist(), best.indices.tolist())]
        return [items[i] for i in best.indices.tolist()]

    def _list_features(self, folder: Path, category: Category, items: tuple[str, ...]) -> torch.Tensor:
        """The list's text features, computed once per CLIP model and list (they do not depend on the image)."""
        key = (folder, category.source, items)
        if key not in self._text_features:
            processor, model = self._clip_model(folder)
            parts = []
            for start in range(0, len(items), TEXT_BATCH):
                tokens = processor.tokenizer(list(items[start : start + TEXT_BATCH]), padding=True, truncation=True,
                                             return_tensors="pt").to(self.device)
                parts.append(_normalized(_projected(model.get_text_features(**tokens))))
            self._text_features[key] = torch.cat(parts)
        return self._text_features[key].to(self.device)

    def _park(self) -> None:
        """The models back in RAM, the device's memory free for generation (A1111's unload)."""
        for loaded in (self._blip, self._clip):
            if loaded is not None:
                loaded[2].to("cpu")
        self._text_features = {key: value.cpu() for key, value in self._text_features.items()}
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _projected(output) -> torch.Tensor:
    """get_*_features' projected embeddings: a tensor, or (newer transformers) an output's pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _normalized(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=-1, keepdim=True)
