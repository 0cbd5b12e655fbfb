"""A1111's hypernetworks: `.pt` files in models/hypernetworks, used with `<hypernet:name:weight>` or the
`sd_hypernetwork` setting.

A file is a dict: for each width (768, 320, 640, 1280, ...) a pair of state dicts, the small MLPs that change
the key and the value input of every attention layer whose input has that width, plus settings
(`layer_structure`, `activation_func`, `add_layer_norm`, dropout, `activate_output`). It is a pickle, so it is
read with `torch.load(weights_only=True)` only: plain containers, numbers, text and tensors; anything else is
refused with a message, never run.

Applying one (A1111's rule): key input `x` becomes `x + mlp_k(x) * weight` (the value likewise; several
hypernetworks apply one after another). Here that is a forward pre-hook on each attention's `to_k` / `to_v`
projection of the UNet; the hooks are removed when the job's batches are done. Nothing in diffusers is patched.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

EXTENSIONS = (".pt",)


class HypernetworkError(ValueError):
    """A hypernetwork file that cannot be used; the message says why."""


def _activation(name: str | None) -> torch.nn.Module | None:
    """A1111's activation names: "linear" (none), "swish" (Hardswish), else a torch activation class by its
    lower-case name (relu, leakyrelu, elu, tanh, sigmoid, gelu, mish, ...)."""
    if name in (None, "linear"):
        return None
    if name == "swish":
        return torch.nn.Hardswish()
    classes = {cls_name.lower(): cls for cls_name, cls in inspect.getmembers(torch.nn.modules.activation, inspect.isclass)
               if cls.__module__ == "torch.nn.modules.activation"}
    if name not in classes:
        raise HypernetworkError(f"unknown activation function {name!r}")
    try:
        return classes[name]()
    except TypeError as error:
        raise HypernetworkError(f"activation function {name!r} needs arguments: {error}") from None


def dropout_structure(settings: dict, layers: list) -> list:
    """A1111's dropout per layer: the file's own list, else 0.3 on hidden layers when `use_dropout`."""
    given = settings.get("dropout_structure")
    if given is not None:
        return list(given)
    if not settings.get("use_dropout", False):
        return [0] * len(layers)
    last = 0.3 if settings.get("last_layer_dropout", False) else 0
    return [0] + [0.3] * (len(layers) - 3) + [last, 0]


def build_mlp(width: int, settings: dict) -> torch.nn.Sequential:
    """One of a hypernetwork's MLPs, laid out as A1111 lays it out (so its state dict's keys fit)."""
    layers = list(settings.get("layer_structure") or [1, 2, 1])
    if len(layers) < 2 or layers[0] != 1 or layers[-1] != 1:
        raise HypernetworkError(f"layer_structure {layers} must start and end with 1")
    dropouts = dropout_structure(settings, layers)
    activation_name = settings.get("activation_func") or "linear"
    parts: list[torch.nn.Module] = []
    for i in range(len(layers) - 1):
        parts.append(torch.nn.Linear(int(width * layers[i]), int(width * layers[i + 1])))
        last = i >= len(layers) - 2
        if not (last and not settings.get("activate_output", False)):
            activation = _activation(activation_name)
            if activation is not None:
                parts.append(activation)
        if settings.get("add_layer_norm", False):
            parts.append(torch.nn.LayerNorm(int(width * layers[i + 1])))
        if i + 1 < len(dropouts) and dropouts[i + 1] > 0:
            parts.append(torch.nn.Dropout(p=float(dropouts[i + 1])))
    return torch.nn.Sequential(*parts)


# A1111's first files named the two layers linear1/linear2.
_OLD_NAMES = {"linear1.weight": "linear.0.weight", "linear1.bias": "linear.0.bias",
              "linear2.weight": "linear.1.weight", "linear2.bias": "linear.1.bias"}


def _load_mlp(width: int, settings: dict, state: dict, which: str) -> torch.nn.Sequential:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HypernetworkError(f"width {width}: the {which} layer is not a dict of tensors")
    state = {_OLD_NAMES.get(key, key): value for key, value in state.items()}
    state = {key.removeprefix("linear."): value for key, value in state.items()}
    mlp = build_mlp(width, settings)
    try:
        mlp.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise HypernetworkError(f"width {width}: the {which} layer does not fit its settings ({error})") from None
    return mlp.eval().requires_grad_(False)


@dataclass
class Hypernetwork:
    """A loaded hypernetwork: width -> (key MLP, value MLP), in float32 on the CPU until used."""

    name: str
    layers: dict[int, tuple[torch.nn.Module, torch.nn.Module]]
    info: dict = field(default_factory=dict)  # the file's own text entries: name, step, sd_checkpoint_name, ...


def parse_hypernetwork(name: str, data) -> Hypernetwork:
    if not isinstance(data, dict):
        raise HypernetworkError(f"expected a dict of layers, found {type(data).__name__}")
    settings = {key: value for key, value in data.items() if isinstance(key, str)}
    layers = {}
    for width, pair in data.items():
        if not isinstance(width, int):
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise HypernetworkError(f"width {width}: expected a pair of layers (key, value)")
        layers[width] = (_load_mlp(width, settings, pair[0], "key"), _load_mlp(width, settings, pair[1], "value"))
    if not layers:
        raise HypernetworkError("no layers (no entry keyed by a width such as 768)")
    info = {key: value for key, value in settings.items() if isinstance(value, (str, int, float, bool))}
    return Hypernetwork(name, layers, info)


def read_hypernetwork_file(path: Path) -> Hypernetwork:
    """A `.pt` file read with weights_only=True: a file that needs more (code) is refused, saying so."""
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a file it then refuses or reads
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # the unpickler's refusal, or a file that is no torch file
        raise HypernetworkError(f"{path.name} cannot be read as plain weights (only tensors, numbers, text and "
                                f"lists are read from .pt files, never code): {str(error).splitlines()[0]}") from None
    return parse_hypernetwork(path.stem, data)


@dataclass(frozen=True)
class HypernetworkFile:
    name: str
    path: Path

    @property
    def shorthash(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:10]


class HypernetworkLibrary:
    """The `.pt` files of one folder (searched recursively) and a cache of loaded ones."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self._files: dict[str, HypernetworkFile] | None = None
        self._loaded: dict[Path, tuple[tuple, Hypernetwork]] = {}
        self._lock = threading.Lock()

    def refresh(self) -> list[HypernetworkFile]:
        found: dict[str, HypernetworkFile] = {}
        if self.directory.is_dir():
            for path in sorted(p for p in self.directory.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()):
                found.setdefault(path.stem, HypernetworkFile(path.stem, path))
        with self._lock:
            self._files = found
        return list(found.values())

    def files(self) -> list[HypernetworkFile]:
        if self._files is None:
            self.refresh()
        return list(self._files.values())

    def find(self, name: str) -> HypernetworkFile | None:
        """By file name (a file added since the last look is found after a refresh)."""
        for attempt in range(2):
            files = {f.name: f for f in self.files()}
            if name in files:
                return files[name]
            if attempt == 0:
                self.refresh()
        return None

    def load(self, file: HypernetworkFile) -> Hypernetwork:
        stat = file.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._loaded.get(file.path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        network = read_hypernetwork_file(file.path)
        with self._lock:
            self._loaded[file.path] = (stamp, network)
        return network


def hypernetwork_dir(flags) -> Path:
    """A1111's folder: `--hypernetwork-dir`, else `<models dir>/hypernetworks`."""
    if getattr(flags, "hypernetwork_dir", None):
        return Path(flags.hypernetwork_dir)
    data_dir = Path(getattr(flags, "data_dir", None) or ".")
    return Path(getattr(flags, "models_dir", None) or data_dir / "models") / "hypernetworks"
