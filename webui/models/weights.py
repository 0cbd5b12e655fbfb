"""Reading checkpoint weights safely: `.safetensors` with safetensors, `.ckpt` and `.pt` only with
`torch.load(weights_only=True)` (a pickle that needs anything more is refused, never run), and a cheap check
of a file's header before anyone tries to load it.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from webui.models.discovery import FILE_KINDS, CheckpointInfo


class CheckpointError(Exception):
    """A checkpoint could not be loaded; the message names the file and says why."""


def _numpy_scalar_globals() -> list:
    """Old training checkpoints store e.g. `global_step` as a numpy scalar: plain data, safe to allow."""
    import numpy

    scalar = numpy._core.multiarray.scalar if hasattr(numpy, "_core") else numpy.core.multiarray.scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), numpy.dtype,
            *(type(numpy.dtype(code)) for code in ("int64", "int32", "float64", "float32"))]


def _read_pickle(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()), warnings.catch_warnings():
            # torch warns about the pickle protocol of files it then rejects; our error says it better
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe:
            raise CheckpointError(
                f"{path.name}: refused; this .ckpt holds a Python object ({unsafe.group(1)}) that can only be "
                "loaded by running code from the file, which is unsafe. Convert it to .safetensors with a "
                "tool you trust, or get a .safetensors version of the model."
            ) from None
        reason = "corrupt, truncated or another format"
    except Exception as error:  # zip, EOF, OS and the unpickler's own errors on damaged data
        reason = f"the file looks truncated or corrupt: {str(error).split('. ')[0].strip() or type(error).__name__}"
    raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({reason})")


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError, OSError, or ValueError
        raise CheckpointError(
            f"{path.name}: not a valid .safetensors file, it looks truncated or corrupt ({error}); download it again"
        ) from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a single-file checkpoint, on the CPU, unwrapped from a "state_dict" entry."""
    path = Path(path)
    kind = FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise CheckpointError(f"{path.name}: not a checkpoint file (expected .safetensors, .ckpt or .pt)")
    if not path.is_file():
        raise CheckpointError(f"{path.name}: file not found ({path})")
    data = _read_safetensors(path) if kind == "safetensors" else _read_pickle(path)
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name}: holds a {type(data).__name__}, not a dictionary of weights")
    tensors = {key: value for key, value in data.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path.name}: holds no weights")
    return tensors


def _weights_file_problem(path: Path) -> str | None:
    """What is certainly wrong with one weights file, from its header or directory alone."""
    try:
        if path.stat().st_size == 0:
            return f"{path.name}: the file is empty"
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            # The header lists every tensor's byte range; opening checks it is whole and covers the file.
            with safe_open(path, "pt"):
                pass
        else:
            with path.open("rb") as handle:
                is_zip = handle.read(4) == b"PK\x03\x04"
            if is_zip:  # torch's format: a zip whose directory sits at the end, so a cut-short file has none
                import zipfile

                with zipfile.ZipFile(path):
                    pass
    except Exception as error:  # SafetensorError, BadZipFile, OSError
        return f"{path.name}: truncated or corrupt ({one_line(error)})"
    return None


def checkpoint_problem(info: CheckpointInfo) -> str | None:
    """Why `info` certainly cannot load, found without loading it (headers only, milliseconds): a
    .safetensors header that is garbage or does not cover the file, a torch zip without its
    directory, an empty file; for a diffusers folder, the same for its weight files. None when
    nothing is found; loading may still fail for reasons only the weights show."""
    if info.kind != "diffusers":
        return _weights_file_problem(info.path)
    for path in sorted(info.path.glob("*/*")):
        if path.suffix.lower() in (".safetensors", ".bin") and (problem := _weights_file_problem(path)) is not None:
            return f"{info.path.name}/{path.parent.name}/{problem}"
    return None


def one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
