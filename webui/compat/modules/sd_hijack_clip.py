"""A1111's `modules.sd_hijack_clip`: the prompt chunking names extensions import (PromptChunk, the
FrozenCLIPEmbedder...WithCustomWords classes). Tokenizing uses our chunker (webui/generation/conditioning.py:
75-token chunks, emphasis, BREAK, embeddings); encoding is our conditioning's, so `forward` raises."""

from __future__ import annotations

from collections import namedtuple

import torch

from webui import compat
from webui.generation.conditioning import CHUNK_TOKENS, EncodeOptions, chunk_text


class PromptChunk:
    """One 77-token chunk: token ids, emphasis multipliers, and (offset, embedding) fixes."""

    def __init__(self):
        self.tokens: list[int] = []
        self.multipliers: list[float] = []
        self.fixes: list = []


PromptChunkFix = namedtuple("PromptChunkFix", ["offset", "embedding"])


class FrozenCLIPEmbedderWithCustomWordsBase(torch.nn.Module):
    """A1111's wrapper around a CLIP text encoder. `wrapped` is anything with a `tokenizer` (A1111's
    FrozenCLIPEmbedder); None: the loaded model's first text encoder's tokenizer."""

    def __init__(self, wrapped=None, hijack=None):
        super().__init__()
        self.wrapped = wrapped
        self.hijack = hijack
        self.chunk_length = CHUNK_TOKENS
        self.is_trainable = False
        self.input_key = "txt"
        self.return_pooled = False
        self.comma_token = None
        self.id_start = self.id_end = self.id_pad = None
        tokenizer = self.tokenizer
        if tokenizer is not None:
            self.id_start, self.id_end = tokenizer.bos_token_id, tokenizer.eos_token_id
            self.id_pad = self.id_end
            self.comma_token = tokenizer.get_vocab().get(",</w>")

    @property
    def tokenizer(self):
        tokenizer = getattr(self.wrapped, "tokenizer", None)
        if tokenizer is None and self.wrapped is None and compat.bound():
            slot = getattr(compat.state().models, "slot", None)
            model = slot.model if slot is not None else None
            tokenizer = model.tokenizers[0] if model is not None else None
        return tokenizer

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}: no tokenizer (wrap an encoder that has one, or load a model)")
        return self.tokenizer

    def empty_chunk(self) -> PromptChunk:
        chunk = PromptChunk()
        tokenizer = self._require_tokenizer()
        chunk.tokens = [tokenizer.bos_token_id] + [tokenizer.eos_token_id] * (self.chunk_length + 1)
        chunk.multipliers = [1.0] * (self.chunk_length + 2)
        return chunk

    def get_target_prompt_token_count(self, token_count: int) -> int:
        return max(1, -(-token_count // self.chunk_length)) * self.chunk_length

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        tokenizer = self._require_tokenizer()
        return tokenizer(list(texts), truncation=False, add_special_tokens=False)["input_ids"]

    def _embeddings(self):
        if not compat.bound():
            return None
        from webui.networks.embeddings import database_for

        state = compat.state()
        slot = getattr(state.models, "slot", None)
        model = slot.model if slot is not None else None
        return database_for(state).for_model(model) if model is not None else None

    def tokenize_line(self, line: str) -> tuple[list[PromptChunk], int]:
        """(chunks, token count) for one prompt, as A1111's: emphasis, BREAK, embeddings, comma backtracking."""
        tokenizer = self._require_tokenizer()
        ours = chunk_text(line, tokenizer, EncodeOptions(), self._embeddings())
        chunks = []
        for part in ours:
            chunk = PromptChunk()
            chunk.tokens, chunk.multipliers = list(part.tokens), list(part.multipliers)
            chunk.fixes = [PromptChunkFix(offset, embedding) for offset, embedding in part.fixes]
            chunks.append(chunk)
        last = ours[-1].tokens[1:-1]
        token_count = self.chunk_length * (len(ours) - 1) + sum(1 for t in last if t != tokenizer.eos_token_id)
        return chunks, token_count

    def process_texts(self, texts: list[str]):
        """(chunks per text, the largest token count), as A1111's."""
        batch, count = [], 0
        for line in texts:
            chunks, tokens = self.tokenize_line(line)
            batch.append(chunks)
            count = max(count, tokens)
        return batch, count

    def forward(self, texts):
        raise NotImplementedError("prompts are encoded by this WebUI's conditioning (webui/generation/conditioning.py), "
                                  "not through a hijacked CLIP; use the on_cfg_denoiser callback to change conds")


class FrozenCLIPEmbedderWithCustomWords(FrozenCLIPEmbedderWithCustomWordsBase):
    pass


class FrozenCLIPEmbedderForSDXLWithCustomWords(FrozenCLIPEmbedderWithCustomWords):
    pass


__getattr__ = compat.report_missing_names(__name__)
