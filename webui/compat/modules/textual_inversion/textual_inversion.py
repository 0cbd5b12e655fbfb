"""A1111's `modules.textual_inversion.textual_inversion`: `Embedding` and `EmbeddingDatabase` shapes over our
embeddings (webui/networks/embeddings.py). Training is not here: creating and training embeddings raise."""

from __future__ import annotations

import torch

from webui import compat


class Embedding:
    """A1111's embedding object: `vec` (the [n, dim] vectors; a dict per encoder on SDXL), name, step, shape,
    vectors, filename, hashes. `Embedding(vec, name, step=None)` as A1111; `from_ours` wraps one we loaded."""

    def __init__(self, vec, name: str, step=None):
        self.vec = vec
        self.name = name
        self.step = step
        self.shape = None
        self.vectors = 0
        self.sd_checkpoint = None
        self.sd_checkpoint_name = None
        self.filename = None
        self.hash = None
        self.shorthash = None
        self.optimizer_state_dict = None
        self.cached_checksum = None
        if isinstance(vec, torch.Tensor):
            self.shape, self.vectors = vec.shape[-1], vec.shape[0]
        elif isinstance(vec, dict) and vec:
            self.shape = sum(tensor.shape[-1] for tensor in vec.values())
            self.vectors = next(iter(vec.values())).shape[0]

    @classmethod
    def from_ours(cls, ours) -> "Embedding":
        by_encoder = ours.vectors_by_encoder
        vec = by_encoder[""] if list(by_encoder) == [""] else dict(by_encoder)
        embedding = cls(vec, ours.name, ours.step)
        embedding.sd_checkpoint, embedding.sd_checkpoint_name = ours.sd_checkpoint, ours.sd_checkpoint_name
        embedding.filename = str(ours.path)
        embedding._ours = ours
        return embedding

    def _hash(self) -> str | None:
        ours = getattr(self, "_ours", None)
        return ours.sha256 if ours is not None else None

    def set_hash(self, value: str) -> None:
        self.hash, self.shorthash = value, (value or "")[:12] or None

    def checksum(self) -> str:
        """The short file hash A1111 shows for the embedding (ours: the first 12 hex digits of its sha256)."""
        if self.cached_checksum is None:
            full = self._hash()
            if full is None:
                raise ValueError(f"embedding {self.name!r} has no file to hash")
            self.cached_checksum = full[:12]
        return self.cached_checksum

    def save(self, filename) -> None:
        raise NotImplementedError("saving embeddings from an extension is not supported here; put .safetensors "
                                  "files in the embeddings folder (models are never written as pickles)")


class EmbeddingDatabase:
    """A1111's view of the embeddings folder for the loaded model: word_embeddings (the usable ones),
    skipped_embeddings (those that do not fit it), reloading, and finding an embedding in a token list."""

    def _embeddings(self):
        from webui.networks.embeddings import database_for

        state = compat.state()
        slot = getattr(state.models, "slot", None)
        return database_for(state).for_model(slot.model if slot is not None else None)

    @property
    def word_embeddings(self) -> dict:
        return {name: Embedding.from_ours(e) for name, e in self._embeddings().loaded.items()}

    @property
    def skipped_embeddings(self) -> dict:
        return {name: Embedding.from_ours(e) for name, (e, _) in self._embeddings().skipped.items() if e is not None}

    @property
    def ids_lookup(self) -> dict:
        """A1111's first-token index: first token id -> [(token ids, Embedding)], longest name first."""
        found = self._embeddings()._by_first
        return {first: [(torch.tensor(ids), Embedding.from_ours(e)) for ids, e in entries]
                for first, entries in found.items()}

    @property
    def embedding_dirs(self) -> dict:
        from webui.networks.embeddings import database_for

        directory = database_for(compat.state()).directory
        return {str(directory): directory} if directory is not None else {}

    def load_textual_inversion_embeddings(self, force_reload: bool = False, sync_with_sd_model: bool = True) -> None:
        from webui.networks.embeddings import database_for

        database_for(compat.state()).refresh(force=force_reload)

    def find_embedding_at_position(self, tokens, offset: int):
        """(Embedding, its length in tokens) for the embedding whose name's tokens start at `offset`, else (None, None)."""
        tokens = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
        found, length = self._embeddings().find_at(tokens, offset)
        return (Embedding.from_ours(found), length) if found is not None else (None, None)

    def register_embedding(self, embedding, model=None):
        raise NotImplementedError("registering embeddings from an extension is not supported here; "
                                  "put the file in the embeddings folder and reload")


def create_embedding(*args, **kwargs):
    raise NotImplementedError("creating textual-inversion embeddings is not supported in this WebUI")


def train_embedding(*args, **kwargs):
    raise NotImplementedError("training textual-inversion embeddings is not supported in this WebUI")


__getattr__ = compat.report_missing_names(__name__)
