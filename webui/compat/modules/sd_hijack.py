"""A1111's `modules.sd_hijack`: only `model_hijack.embedding_db`, over our embedding database."""

from __future__ import annotations

from webui import compat


class EmbeddingDatabase:
    """A1111's view of the textual-inversion embeddings that fit the loaded model."""

    def _embeddings(self):
        from webui.networks.embeddings import database_for

        state = compat.state()
        slot = getattr(state.models, "slot", None)
        return database_for(state).for_model(slot.model if slot is not None else None)

    @property
    def word_embeddings(self) -> dict:
        return dict(self._embeddings().loaded)

    @property
    def skipped_embeddings(self) -> dict:
        return {name: embedding for name, (embedding, _) in self._embeddings().skipped.items()}

    @property
    def ids_lookup(self) -> dict:
        return {}

    def load_textual_inversion_embeddings(self, force_reload=False) -> None:
        from webui.networks.embeddings import database_for

        database_for(compat.state()).refresh(force=force_reload)


class StableDiffusionModelHijack:
    def __init__(self):
        self.embedding_db = EmbeddingDatabase()
        self.optimization_method = None
        self.fixes = None
        self.comments: list = []
        self.extra_generation_params: dict = {}

    def get_prompt_lengths(self, text):
        return 0, 75

    def clear_comments(self):
        self.comments = []
        self.extra_generation_params = {}


model_hijack = StableDiffusionModelHijack()


__getattr__ = compat.report_missing_names(__name__)
