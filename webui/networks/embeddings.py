"""Textual-inversion embeddings from `<data_dir>/embeddings` (`--embeddings-dir`), A1111-compatible.

An embedding is used by writing its name (the file stem) in a prompt. Its name is tokenised
with CLIP; wherever that token sequence occurs in a prompt's token stream, the chunker
(`generation/conditioning.py`) puts as many placeholder slots as the embedding has vectors
and the encoder writes the vectors into the token embeddings at those slots.

Formats read (the ones A1111 reads):
- `.pt` from A1111's trainer: `{"string_to_param": {"*": tensor[n, dim]}, "name", "step", ...}`
- `.bin` in diffusers' style: `{"<token>": tensor[dim] or [n, dim]}`
- `.safetensors` with `emb_params`, or a single tensor
- SDXL: `clip_l` [n, 768] and `clip_g` [n, 1280] in one file
Pickles are read with `torch.load(weights_only=True)` only. An embedding whose width does
not fit the model's text encoder(s) is listed as skipped, with the reason.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

EXTENSIONS = (".pt", ".bin", ".safetensors")
TI_HASH_LENGTH = 12  # A1111 writes the first 12 hex digits of the sha256 in "TI hashes"
MAX_VECTORS = 75  # one chunk; a longer embedding could never be placed


class EmbeddingError(Exception):
    """A file in the embeddings folder cannot be read as an embedding."""


@dataclass
class Embedding:
    """One embedding file's vectors and metadata."""

    name: str
    path: Path
    vectors_by_encoder: dict[str, torch.Tensor]  # "" (one encoder) or "clip_l"/"clip_g", each [n, dim]
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    cache_path: Path | None = None
    _sha256: str | None = field(default=None, repr=False)

    @property
    def vectors(self) -> int:
        return next(iter(self.vectors_by_encoder.values())).shape[0]

    @property
    def shape(self) -> int:
        """The width A1111 reports: summed over the encoders (768 + 1280 = 2048 on SDXL)."""
        return sum(tensor.shape[-1] for tensor in self.vectors_by_encoder.values())

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            from ..models.hashes import sha256

            self._sha256 = sha256(self.path, self.cache_path)
        return self._sha256

    @property
    def short_hash(self) -> str:
        return self.sha256[:TI_HASH_LENGTH]

    def vectors_for(self, key: str) -> torch.Tensor:
        """The [n, dim] vectors for one text encoder ("" for SD1/SD2, "clip_l"/"clip_g" for SDXL)."""
        if key in self.vectors_by_encoder:
            return self.vectors_by_encoder[key]
        return next(iter(self.vectors_by_encoder.values()))

    def info(self) -> dict:
        """A1111's /sdapi/v1/embeddings entry."""
        return {"step": self.step, "sd_checkpoint": self.sd_checkpoint, "sd_checkpoint_name": self.sd_checkpoint_name,
                "shape": self.shape, "vectors": self.vectors}


def _as_matrix(tensor: torch.Tensor, what: str) -> torch.Tensor:
    tensor = tensor.detach().to(torch.float32, copy=True)
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise EmbeddingError(f"{what} has shape {tuple(tensor.shape)}, expected [vectors, width]")
    return tensor


def _read(path: Path) -> dict:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:
            raise EmbeddingError(f"not a valid .safetensors file ({error})") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # includes refusals of pickled code: only plain tensors and containers load
        first = " ".join(str(error).split())[:200]
        raise EmbeddingError(f"cannot be read safely with torch.load(weights_only=True) ({first})") from None
    if not isinstance(data, dict):
        raise EmbeddingError(f"holds a {type(data).__name__}, not a dictionary")
    return data


def parse_embedding(data: dict, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(vectors per encoder, metadata) from a loaded file's dictionary, for any of A1111's formats."""
    meta = {}
    if "string_to_param" in data:  # A1111's trainer
        params = data["string_to_param"]
        if not isinstance(params, dict) or not params:
            raise EmbeddingError("string_to_param is empty or not a dictionary")
        tensor = next(iter(params.values()))
        if not isinstance(tensor, torch.Tensor):
            raise EmbeddingError("string_to_param holds no tensor")
        vectors = {"": _as_matrix(tensor, "string_to_param")}
        step = data.get("step")
        meta = {"step": int(step) if isinstance(step, (int, float)) else None,
                "sd_checkpoint": data.get("sd_checkpoint") if isinstance(data.get("sd_checkpoint"), str) else None,
                "sd_checkpoint_name": data.get("sd_checkpoint_name")
                if isinstance(data.get("sd_checkpoint_name"), str) else None}
    elif "clip_l" in data and "clip_g" in data:  # SDXL
        vectors = {"clip_l": _as_matrix(data["clip_l"], "clip_l"), "clip_g": _as_matrix(data["clip_g"], "clip_g")}
        if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
            raise EmbeddingError("clip_l and clip_g have different numbers of vectors")
    elif "emb_params" in data:
        vectors = {"": _as_matrix(data["emb_params"], "emb_params")}
    else:
        tensors = {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}
        if len(tensors) != 1:
            raise EmbeddingError(f"unrecognised embedding format (keys: {', '.join(map(str, list(data)[:5]))})")
        vectors = {"": _as_matrix(next(iter(tensors.values())), f"tensor {next(iter(tensors))!r}")}
    if next(iter(vectors.values())).shape[0] > MAX_VECTORS:
        raise EmbeddingError(f"has {next(iter(vectors.values())).shape[0]} vectors; at most {MAX_VECTORS} fit a chunk")
    return vectors, meta


def load_embedding(path: str | os.PathLike, cache_path: str | os.PathLike | None = None) -> Embedding:
    path = Path(path)
    try:
        vectors, meta = parse_embedding(_read(path), path.stem)
    except EmbeddingError as error:
        raise EmbeddingError(f"{path.name}: {error}") from None
    return Embedding(path.stem, path, vectors, cache_path=Path(cache_path) if cache_path else None, **meta)


def encoder_widths(model) -> dict[str, int]:
    """What the model's text encoders need: {"": width} or {"clip_l": 768, "clip_g": 1280}."""
    return {encoder.embedding_key: _token_embedding(encoder.encoder).weight.shape[1]
            for encoder in model.family.text_encoders(model)}


def _token_embedding(encoder) -> torch.nn.Embedding:
    return getattr(encoder, "text_model", encoder).embeddings.token_embedding


def _mismatch(embedding: Embedding, widths: dict[str, int]) -> str | None:
    """Why `embedding` cannot be used with text encoders of these widths, or None if it can."""
    have = {key: tensor.shape[1] for key, tensor in embedding.vectors_by_encoder.items()}
    if set(widths) == {""}:
        if set(have) != {""}:
            return f"SDXL embedding (clip_l {have.get('clip_l')}, clip_g {have.get('clip_g')}); this model needs width {widths['']}"
        if have[""] != widths[""]:
            return f"width {have['']}; this model's text encoder needs {widths['']}"
        return None
    if set(have) == {""}:
        return f"width {have['']} single-encoder embedding; this SDXL model needs clip_l {widths['clip_l']} + clip_g {widths['clip_g']}"
    if have != widths:
        return f"clip_l {have['clip_l']} + clip_g {have['clip_g']}; this model needs clip_l {widths['clip_l']} + clip_g {widths['clip_g']}"
    return None


class ModelEmbeddings:
    """The embeddings usable with one model, indexed by their names' token sequences."""

    def __init__(self, loaded: dict[str, Embedding], skipped: dict[str, tuple[Embedding | None, str]], tokenizer=None):
        self.loaded = loaded
        self.skipped = skipped  # name -> (embedding if it could be read, reason)
        self._by_first: dict[int, list[tuple[tuple[int, ...], Embedding]]] = {}
        if tokenizer is not None:
            for embedding in loaded.values():
                ids = tuple(tokenizer(embedding.name, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
                if ids:
                    self._by_first.setdefault(ids[0], []).append((ids, embedding))
            for candidates in self._by_first.values():
                candidates.sort(key=lambda item: len(item[0]), reverse=True)  # longest name first

    def find_at(self, tokens: list[int], position: int) -> tuple[Embedding | None, int]:
        """The longest embedding whose name's tokens start at `position`, and how many tokens it spans."""
        for ids, embedding in self._by_first.get(tokens[position], ()):
            if tuple(tokens[position : position + len(ids)]) == ids:
                return embedding, len(ids)
        return None, 0

    def listing(self) -> dict:
        """A1111's `GET /sdapi/v1/embeddings` shape; skipped entries also say why."""
        skipped = {}
        for name, (embedding, reason) in self.skipped.items():
            entry = embedding.info() if embedding is not None else {
                "step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None, "vectors": None}
            skipped[name] = {**entry, "reason": reason}
        return {"loaded": {name: e.info() for name, e in self.loaded.items()}, "skipped": skipped}


class EmbeddingDatabase:
    """Every embedding file under one folder, re-read only when a file changes."""

    def __init__(self, directory: str | os.PathLike | None, cache_path: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory else None
        self.cache_path = Path(cache_path) if cache_path else None
        self._files: dict[Path, tuple[tuple[float, int], Embedding | None, str | None]] = {}
        self._lock = threading.Lock()

    def _scan(self) -> list[Path]:
        if self.directory is None or not self.directory.is_dir():
            return []
        found = []
        for root, dirs, names in os.walk(self.directory, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(root) / n for n in sorted(names) if Path(n).suffix.lower() in EXTENSIONS]
        return found

    def refresh(self, force: bool = False) -> None:
        """Re-read new and changed files (all of them with `force`), forget removed ones."""
        with self._lock:
            if force:
                self._files.clear()
            files = {}
            for path in self._scan():
                try:
                    stat = path.stat()
                except OSError:
                    continue
                fingerprint = (stat.st_mtime, stat.st_size)
                known = self._files.get(path)
                if known is not None and known[0] == fingerprint:
                    files[path] = known
                    continue
                try:
                    files[path] = (fingerprint, load_embedding(path, self.cache_path), None)
                except EmbeddingError as error:
                    log.warning("embedding skipped: %s", error)
                    files[path] = (fingerprint, None, str(error).partition(": ")[2] or str(error))
            self._files = files

    def for_model(self, model=None) -> ModelEmbeddings:
        """The embeddings that fit `model` (all readable ones when no model is given)."""
        self.refresh()
        widths = encoder_widths(model) if model is not None else None
        loaded: dict[str, Embedding] = {}
        skipped: dict[str, tuple[Embedding | None, str]] = {}
        with self._lock:
            entries = list(self._files.items())
        for path, (_, embedding, error) in entries:
            name = path.stem
            if embedding is None:
                skipped[name] = (None, error or "unreadable")
                continue
            reason = _mismatch(embedding, widths) if widths is not None else None
            if reason is not None:
                skipped[name] = (embedding, reason)
            elif name in loaded:
                skipped[name] = (embedding, f"duplicate name; {loaded[name].path} is used")
            else:
                loaded[name] = embedding
        return ModelEmbeddings(loaded, skipped, model.tokenizers[0] if model is not None else None)


def database_for(state) -> EmbeddingDatabase:
    """The shared state's embedding database, created on first use (`--embeddings-dir` or DATA_DIR/embeddings)."""
    database = getattr(state, "embeddings", None)
    if database is None:
        flags = state.flags
        directory = getattr(flags, "embeddings_dir", None) or Path(flags.data_dir) / "embeddings"
        database = EmbeddingDatabase(directory, Path(flags.data_dir) / "cache.json")
        state.embeddings = database
    return database
