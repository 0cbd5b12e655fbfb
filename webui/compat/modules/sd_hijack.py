"""A1111's `modules.sd_hijack`: only `model_hijack.embedding_db` (modules.textual_inversion's database)."""

from __future__ import annotations

from webui import compat
from .textual_inversion.textual_inversion import EmbeddingDatabase


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
