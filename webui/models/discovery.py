"""Find checkpoints on disk and resolve the ways A1111 users name them.

Looked at: `models/Stable-diffusion/` (recursively), an extra `--ckpt-dir` (recursively) and a single
`--ckpt` file. A checkpoint is a `.safetensors`, `.ckpt` or `.pt` file, or a diffusers folder (a folder
holding `model_index.json`; we do not look inside it, its weight files are not checkpoints of their own).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from webui.models import hashes

CHECKPOINT_SUBDIR = "Stable-diffusion"  # under the models directory, as in A1111
FILE_KINDS = {".safetensors": "safetensors", ".ckpt": "ckpt", ".pt": "ckpt"}
# A1111 keeps VAE files next to their checkpoint under these names; they are not checkpoints.
VAE_SUFFIXES = (".vae.safetensors", ".vae.ckpt", ".vae.pt")
DIFFUSERS_MARKER = "model_index.json"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path  # absolute
    name: str  # path relative to the folder it was found in, without extension, with "/" separators
    kind: str  # "safetensors", "ckpt" (also .pt) or "diffusers"
    sha256: str | None = None  # full hex digest, when known
    builtin: bool = False  # the small demo model shipped with the project

    @property
    def short_hash(self) -> str | None:
        return hashes.short_hash(self.sha256) if self.sha256 else None

    @property
    def title(self) -> str:
        """What the checkpoint dropdown shows: "name [shorthash]", or just the name before it is hashed."""
        return f"{self.name} [{self.short_hash}]" if self.sha256 else self.name

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        """The file name without extension: what A1111 writes as "Model:" in the infotext."""
        return self.name.rsplit("/", 1)[-1]

    def aliases(self) -> set[str]:
        """Every string that names this checkpoint exactly (A1111 accepts all of these)."""
        a1111_name = self.name + self.path.suffix if self.kind != "diffusers" else self.name  # A1111 keeps the extension
        names = {self.name, a1111_name, self.filename, self.stem, self.name.replace("/", "_")}
        if self.sha256:
            names |= {self.sha256, self.short_hash}
            names |= {f"{name} [{self.short_hash}]" for name in (self.name, a1111_name, self.stem, self.filename)}
        return names


def checkpoint_kind(path: Path) -> str | None:
    """The kind of checkpoint at `path` ("safetensors", "ckpt" or "diffusers"), or None if it is none."""
    if path.is_dir():
        return "diffusers" if (path / DIFFUSERS_MARKER).is_file() else None
    if path.name.lower().endswith(VAE_SUFFIXES):
        return None
    return FILE_KINDS.get(path.suffix.lower())


def _name_for(path: Path, root: Path | None) -> str:
    relative = path.relative_to(root) if root is not None else Path(path.name)
    if path.is_file():
        relative = relative.with_suffix("")
    return relative.as_posix()


def _walk(root: Path):
    """Checkpoint paths under `root`, following links to folders but never the same folder twice."""
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        here = Path(folder)
        if here != root and (here / DIFFUSERS_MARKER).is_file():
            subfolders.clear()  # a diffusers folder: the folder is the checkpoint
            yield here
            continue
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for file in sorted(files):
            if checkpoint_kind(here / file) is not None:
                yield here / file


def _info(path: Path, root: Path | None, cache_path: Path | None) -> CheckpointInfo | None:
    kind = checkpoint_kind(path)
    if kind is None:
        return None
    sha = hashes.cached_sha256(path, cache_path)
    return CheckpointInfo(path=path.absolute(), name=_name_for(path, root), kind=kind, sha256=sha)


# The demo model trained by webui/demo/train.py, shipped so a fresh install draws something offline.
DEMO_MODEL = Path(__file__).resolve().parents[2] / "models" / "demo" / "shapes-demo"


def demo_checkpoint(folder: Path = DEMO_MODEL, cache_path: str | os.PathLike | None = None) -> CheckpointInfo | None:
    """The built-in demo model, offered only when the user has no checkpoint of their own."""
    if not (folder / DIFFUSERS_MARKER).is_file():
        return None
    return CheckpointInfo(path=folder, name=folder.name, kind="diffusers", builtin=True,
                          sha256=hashes.cached_sha256(folder, cache_path))


def available_checkpoints(
    models_dir: str | os.PathLike | None,
    ckpt_dir: str | os.PathLike | None = None,
    ckpt: str | os.PathLike | None = None,
    cache_path: str | os.PathLike | None = None,
) -> list[CheckpointInfo]:
    """What the WebUI, the API and the CLI offer: the user's checkpoints (`list_checkpoints`), or the
    built-in demo model while there are none."""
    found = list_checkpoints(models_dir, ckpt_dir, ckpt, cache_path)
    if not found and (demo := demo_checkpoint(cache_path=cache_path)) is not None:
        found = [demo]
    return found


def list_checkpoints(
    models_dir: str | os.PathLike | None,
    ckpt_dir: str | os.PathLike | None = None,
    ckpt: str | os.PathLike | None = None,
    cache_path: str | os.PathLike | None = None,
) -> list[CheckpointInfo]:
    """All checkpoints: the `--ckpt` file first, then those in `models_dir` and `ckpt_dir` sorted by name.

    `models_dir` is the `models/Stable-diffusion` folder itself. Hashes are filled in from the cache only;
    nothing is hashed here (use `with_hash`), so listing stays fast however big the files are.
    """
    found: list[CheckpointInfo] = []
    seen: set[Path] = set()

    def add(info: CheckpointInfo | None) -> None:
        if info is not None and info.path.resolve() not in seen:
            seen.add(info.path.resolve())
            found.append(info)

    if ckpt is not None and Path(ckpt).exists():
        ckpt = Path(ckpt).absolute()
        root = next((Path(d).absolute() for d in (models_dir, ckpt_dir) if d and ckpt.is_relative_to(Path(d).absolute())), None)
        add(_info(ckpt, root, cache_path))
    in_folders: list[CheckpointInfo] = []
    for folder in (models_dir, ckpt_dir):
        if folder is None or not Path(folder).is_dir():
            continue
        root = Path(folder).absolute()
        in_folders += [info for path in _walk(root) if (info := _info(path, root, cache_path))]
    for info in sorted(in_folders, key=lambda info: (info.name.lower(), info.name)):
        add(info)
    return found


def with_hash(info: CheckpointInfo, cache_path: str | os.PathLike | None = None) -> CheckpointInfo:
    """The same checkpoint with its SHA-256 filled in (computed once, then read from the cache)."""
    if info.sha256:
        return info
    return replace(info, sha256=hashes.sha256(info.path, cache_path))


class CheckpointNotFound(LookupError):
    pass


_TRAILING_HASH = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]\s*$")


def _match(query: str, checkpoints: list[CheckpointInfo]) -> CheckpointInfo | None:
    query = query.strip().replace("\\", "/")
    if not query:
        return None
    for info in checkpoints:
        if query in info.aliases():
            return info
    lowered = query.lower()
    for info in checkpoints:
        if lowered in {alias.lower() for alias in info.aliases()}:
            return info
    bracketed = _TRAILING_HASH.match(query)
    if bracketed:
        digest = bracketed["hash"].lower()
        for info in checkpoints:
            if info.sha256 and info.sha256.startswith(digest):
                return info
        return _match(bracketed["name"], checkpoints)
    containing = [info for info in checkpoints if lowered in info.title.lower()]
    return min(containing, key=lambda info: len(info.title), default=None)


def find_checkpoint(
    query: str | os.PathLike | None,
    checkpoints: list[CheckpointInfo] | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    cache_path: str | os.PathLike | None = None,
) -> CheckpointInfo:
    """The checkpoint that `query` names, the way A1111 resolves `--ckpt`, `sd_model_checkpoint` and infotexts.

    `checkpoints` defaults to `list_checkpoints(models_dir, ckpt_dir)`. Tried in order: a path to a
    checkpoint on disk; an exact title, name (with or without extension), file name or known hash (also
    ignoring case); for "name [hash]" the hash alone (the file may have been renamed), then the name alone
    (the file may have changed); last, the shortest title that contains the query. No query means the
    first checkpoint, as A1111 falls back to when none is chosen. Raises `CheckpointNotFound`.
    """
    if checkpoints is None:
        checkpoints = list_checkpoints(models_dir, ckpt_dir, cache_path=cache_path)
    if query is None:
        if checkpoints:
            return checkpoints[0]
        places = ", ".join(str(Path(d)) for d in (models_dir, ckpt_dir) if d) or "the checkpoint folders"
        raise CheckpointNotFound(f"no checkpoints found; put a .safetensors file in {places}")
    path = Path(query).expanduser()
    if path.exists() and checkpoint_kind(path) is not None:
        same = [info for info in checkpoints if info.path.resolve() == path.resolve()]
        return same[0] if same else _info(path, None, cache_path)
    match = _match(str(query), checkpoints)
    if match is None:
        known = ", ".join(info.title for info in checkpoints[:5]) or "none found"
        raise CheckpointNotFound(f"no checkpoint matches {str(query)!r} (known: {known}{', ...' if len(checkpoints) > 5 else ''})")
    return match
