"""LoRA files: finding them in models/Lora, reading them, and sorting their keys by layer.

A LoRA file is a flat dictionary of tensors. Two key families are read:

- Kohya/A1111: `lora_unet_<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`, where
  `<module>` is the module path with dots written as underscores (`lora_te_`, or
  `lora_te1_`/`lora_te2_` on SDXL, for the text encoders). LoCon puts conv layers in the
  same layout.
- diffusers/PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight` (also the older
  `.lora.down`/`.lora.up` and attention-processor forms), `text_encoder.` and
  `text_encoder_2.` for the text encoders.

Each layer becomes a `LoraLayer` filed under (part, normalised module name): part is "unet"
or the text encoder's index, the name is the module path with dots as underscores (and no
`text_model_` prefix for text encoders). `apply.py` matches these names to the model.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.hashes import sha256 as file_sha256

log = logging.getLogger(__name__)

EXTENSIONS = (".safetensors", ".pt", ".ckpt")

_KOHYA_PREFIXES = (("lora_unet_", "unet"), ("lora_te1_", 0), ("lora_te2_", 1), ("lora_te_", 0))
_DIFFUSERS_PREFIXES = (("unet.", "unet"), ("text_encoder_2.", 1), ("text_encoder.", 0),
                       ("base_model.model.", "unet"), ("transformer.", "unet"))
_DIFFUSERS_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora\.down|lora\.up|lora_linear_layer\.down|lora_linear_layer\.up"
    r"|lora_down|lora_up)(?:\.[A-Za-z0-9_]+)?\.weight$"
)
_KIND = {"lora_A": "down", "lora_down": "down", "lora.down": "down", "lora_linear_layer.down": "down",
         "lora_B": "up", "lora_up": "up", "lora.up": "up", "lora_linear_layer.up": "up"}


class LoraError(ValueError):
    """A file that cannot be read as a LoRA."""


@dataclass
class LoraLayer:
    """One low-rank update: delta W = up @ down * alpha / rank."""

    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return (self.alpha / self.rank) if self.alpha is not None else 1.0

    def delta(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """The float32 weight update for a weight of `shape` (Linear, or Conv2d 1x1/3x3)."""
        down = self.down.to(device, torch.float32)
        up = self.up.to(device, torch.float32)
        product = up.flatten(1) @ down.flatten(1)  # [out, in * kh * kw]
        if product.numel() != shape.numel():
            raise ValueError(f"update of {tuple(up.shape[:1]) + tuple(down.shape[1:])} does not fit {tuple(shape)}")
        return product.reshape(shape) * self.scale


@dataclass
class LoraNetwork:
    """A parsed LoRA file."""

    name: str
    layers: dict[tuple, LoraLayer]  # (part, normalised module name) -> layer
    unsupported: list[str] = field(default_factory=list)  # why some keys were left out


def _normalise(part, module: str) -> str:
    name = module.replace(".", "_")
    if part != "unet" and name.startswith("text_model_"):
        name = name[len("text_model_"):]
    return name


def parse_state_dict(name: str, state: dict[str, torch.Tensor]) -> LoraNetwork:
    """Sort a LoRA state dict's keys into layers; keys of unsupported kinds are noted, not fatal."""
    layers: dict[tuple, LoraLayer] = {}
    lycoris = other = 0
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        target = _kohya_target(key) or _diffusers_target(key)
        if target is None:
            if any(tag in key for tag in (".hada_", ".lokr_")):
                lycoris += 1
            else:
                other += 1
            continue
        part, module, kind = target
        layer = layers.setdefault((part, _normalise(part, module)), LoraLayer())
        if kind == "alpha":
            layer.alpha = float(tensor.float().flatten()[0])
        else:
            setattr(layer, kind, tensor)
    unsupported = []
    incomplete = [k for k, layer in layers.items() if layer.down is None or layer.up is None]
    for k in incomplete:
        del layers[k]
    if lycoris:
        unsupported.append(f"LoHa/LoKr not supported yet ({lycoris} keys left out)")
    if other or incomplete:
        unsupported.append(f"{other + len(incomplete)} keys of an unsupported kind left out")
    return LoraNetwork(name, layers, unsupported)


def _kohya_target(key: str):
    module, _, suffix = key.partition(".")
    kind = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}.get(suffix)
    if kind is None:
        return None
    for prefix, part in _KOHYA_PREFIXES:
        if module.startswith(prefix):
            return part, module[len(prefix):], kind
    return None


def _diffusers_target(key: str):
    part = None
    for prefix, candidate in _DIFFUSERS_PREFIXES:
        if key.startswith(prefix):
            part, key = candidate, key[len(prefix):]
            break
    if part is None:
        return None
    if key.endswith(".alpha"):
        module, kind = key[: -len(".alpha")], "alpha"
    else:
        match = _DIFFUSERS_KEY.match(key)
        if match is None:
            return None
        module, kind = match["module"], _KIND[match["kind"]]
    # The attention-processor form: `attn1.processor.to_q_lora` is `attn1.to_q`.
    module = module.replace(".processor.", ".")
    if module.endswith("to_out_lora"):
        module = module[: -len("to_out_lora")] + "to_out.0"
    elif module.endswith("_lora"):
        module = module[: -len("_lora")]
    return part, module, kind


def read_lora_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file; pickles only through torch's weights-only loader."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # damaged file, or a pickle with code in it
        raise LoraError(f"could not read {path.name}: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LoraError(f"{path.name} does not hold a dictionary of tensors")
    return state


def read_metadata(path: Path) -> dict:
    """The safetensors header metadata (values that are JSON decoded), as A1111 lists it."""
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as file:
            raw = file.metadata() or {}
    except Exception:
        return {}
    metadata = {}
    for key, value in raw.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        metadata[key] = value
    return metadata


@dataclass
class LoraFile:
    """A LoRA on disk: its name (the file stem), alias (`ss_output_name`) and path."""

    name: str
    path: Path
    cache_path: Path | None = None
    _metadata: dict | None = None
    _sha256: tuple | None = None  # ((mtime_ns, size), hex digest)

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            self._metadata = read_metadata(self.path)
        return self._metadata

    @property
    def alias(self) -> str:
        alias = self.metadata.get("ss_output_name")
        return alias if isinstance(alias, str) and alias else self.name

    @property
    def sha256(self) -> str:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._sha256 is None or self._sha256[0] != stamp:
            self._sha256 = (stamp, file_sha256(self.path, self.cache_path))
        return self._sha256[1]

    @property
    def shorthash(self) -> str:
        """A1111's "Lora hashes" entry: the first 12 hex digits of the file's sha256."""
        return self.sha256[:12]


class LoraLibrary:
    """The LoRA files of one folder (searched recursively), and a cache of parsed files."""

    def __init__(self, directory: Path | str, cache_path: Path | str | None = None):
        self.directory = Path(directory)
        self.cache_path = Path(cache_path) if cache_path else None
        self._files: dict[str, LoraFile] | None = None
        self._parsed: dict[Path, tuple[tuple, LoraNetwork]] = {}
        self._lock = threading.Lock()

    def refresh(self) -> list[LoraFile]:
        found: dict[str, LoraFile] = {}
        if self.directory.is_dir():
            paths = sorted(p for p in self.directory.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
            for path in paths:
                found.setdefault(path.stem, LoraFile(path.stem, path, self.cache_path))
        with self._lock:
            self._files = found
        return list(found.values())

    def files(self) -> list[LoraFile]:
        if self._files is None:
            self.refresh()
        return list(self._files.values())

    def find(self, name: str) -> LoraFile | None:
        """By file name, then by alias; a file added since the last look is found after a refresh."""
        for attempt in range(2):
            files = {f.name: f for f in self.files()}
            if name in files:
                return files[name]
            for file in files.values():
                if file.alias == name:
                    return file
            if attempt == 0:
                self.refresh()
        return None

    def load(self, file: LoraFile) -> LoraNetwork:
        """The parsed file, read again only when its size or modification time changed."""
        stat = file.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._parsed.get(file.path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        network = parse_state_dict(file.name, read_lora_file(file.path))
        with self._lock:
            self._parsed[file.path] = (stamp, network)
        return network


_libraries: dict[tuple, LoraLibrary] = {}
_libraries_lock = threading.Lock()


def shared_library(directory: Path | str, cache_path: Path | str | None = None) -> LoraLibrary:
    """One library per folder for the whole process, so its parsed-file cache is shared."""
    key = (str(Path(directory).resolve()), str(cache_path))
    with _libraries_lock:
        if key not in _libraries:
            _libraries[key] = LoraLibrary(directory, cache_path)
        return _libraries[key]


def library_for_flags(flags) -> LoraLibrary:
    """The library of `--lora-dir`, else `<models dir>/Lora`."""
    data_dir = Path(getattr(flags, "data_dir", None) or ".")
    models_dir = Path(getattr(flags, "models_dir", None) or data_dir / "models")
    directory = Path(flags.lora_dir) if getattr(flags, "lora_dir", None) else models_dir / "Lora"
    return shared_library(directory, data_dir / "cache.json")
