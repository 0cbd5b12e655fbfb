"""Text conditioning with A1111's semantics: 75-token chunks, emphasis, BREAK, clip skip.

One *encode group* is the set of texts A1111 encodes in one call: the scheduled texts of
one prompt (one AND part, or a negative prompt). Within a group every text gets the same
number of 77-token chunks, and "Original" emphasis restores the mean over the whole group,
so grouping is part of the result. Each distinct text is still encoded once: a text
that the schedule lists several times (alternation) is weighted by its count instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from typing import TYPE_CHECKING

from prompt_parser import BREAK, attention_runs

if TYPE_CHECKING:
    from ..models.model import SDModel

CHUNK_TOKENS = 75  # prompt tokens per chunk; with BOS and EOS a chunk is 77
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")


@dataclass(frozen=True)
class EncodeOptions:
    emphasis: str = "Original"  # A1111 setting "emphasis"; unknown names act as Original
    clip_skip: int = 1  # CLIP_stop_at_last_layers
    comma_padding_backtrack: int = 20  # 0 disables
    sdxl_clip_l_skip: bool = False  # apply clip skip to SDXL's CLIP-L too

    @classmethod
    def from_settings(cls, settings) -> "EncodeOptions":
        """The options a job's GenerationSettings ask for."""
        return cls(settings.emphasis, settings.clip_skip, settings.comma_padding_backtrack, settings.sdxl_clip_l_skip)


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on for one text."""

    crossattn: torch.Tensor  # [77 * chunks, channels]
    pooled: torch.Tensor | None = None  # SDXL: [1280], SD3: [2048], Flux: [768]; from the first CLIP chunk

    @property
    def tokens(self) -> int:
        return self.crossattn.shape[0]


@dataclass
class _Chunk:
    tokens: list[int]
    multipliers: list[float]
    # Textual inversion: (offset among the 75 prompt tokens, embedding) for each embedding placed here.
    fixes: list[tuple[int, object]] = field(default_factory=list)


EMBEDDING_PLACEHOLDER = 0  # token id in an embedding's slots (A1111's); never EOS, which pooling looks for


def chunk_text(text: str, tokenizer, options: EncodeOptions, embeddings=None) -> list[_Chunk]:
    """Split one text into 77-token chunks with per-token emphasis multipliers.

    `embeddings` (networks.embeddings.ModelEmbeddings): where an embedding's name stands in a
    run's tokens, it takes as many placeholder slots as it has vectors, recorded in the chunk's
    `fixes`; one that does not fit in the rest of the chunk moves whole to the next one.
    """
    if options.emphasis == "None":
        runs: Sequence[tuple[str, float]] = ((text, 1.0),)
    else:
        runs = attention_runs(text)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    run_tokens = tokenizer([run for run, _ in runs], add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    chunks: list[_Chunk] = []
    current = _Chunk([], [])
    last_comma = -1

    def close_chunk() -> None:
        nonlocal current, last_comma
        padding = CHUNK_TOKENS - len(current.tokens)
        current.tokens = [bos, *current.tokens, *[eos] * padding, eos]
        current.multipliers = [1.0, *current.multipliers, *[1.0] * padding, 1.0]
        chunks.append(current)
        current = _Chunk([], [])
        last_comma = -1

    for tokens, (run, weight) in zip(run_tokens, runs):
        if (run, weight) == BREAK:
            close_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(current.tokens)
            elif (
                options.comma_padding_backtrack
                and len(current.tokens) == CHUNK_TOKENS
                and last_comma != -1
                and CHUNK_TOKENS - last_comma <= options.comma_padding_backtrack
            ):
                # Full chunk, and a comma near its end: move the words after the comma
                # to the next chunk rather than cutting a phrase in two.
                moved = _Chunk(current.tokens[last_comma + 1 :], current.multipliers[last_comma + 1 :],
                               [(offset - last_comma - 1, e) for offset, e in current.fixes if offset > last_comma])
                del current.tokens[last_comma + 1 :], current.multipliers[last_comma + 1 :]
                current.fixes = [(offset, e) for offset, e in current.fixes if offset <= last_comma]
                close_chunk()
                current = moved
            if len(current.tokens) == CHUNK_TOKENS:
                close_chunk()
            embedding, span = embeddings.find_at(tokens, position) if embeddings is not None else (None, 0)
            if embedding is None:
                current.tokens.append(token)
                current.multipliers.append(weight)
                position += 1
                continue
            slots = embedding.vectors
            if len(current.tokens) + slots > CHUNK_TOKENS:
                close_chunk()  # the embedding moves whole to the next chunk
            current.fixes.append((len(current.tokens), embedding))
            current.tokens += [EMBEDDING_PLACEHOLDER] * slots
            current.multipliers += [weight] * slots
            position += span
    if current.tokens or not chunks:
        close_chunk()
    return chunks


def token_count(text: str, tokenizer, options: EncodeOptions = EncodeOptions(), embeddings=None) -> tuple[int, int]:
    """A1111's prompt token counter: (tokens used, the chunk target it is shown against)."""
    chunks = chunk_text(text, tokenizer, options, embeddings)
    last = chunks[-1]
    real = sum(1 for token in last.tokens[1:-1] if token != tokenizer.eos_token_id)
    count = CHUNK_TOKENS * (len(chunks) - 1) + real
    return count, max(CHUNK_TOKENS, -(-count // CHUNK_TOKENS) * CHUNK_TOKENS)


class ClipTextEncoder:
    """One CLIP text encoder, read at the layer its model family uses (the family builds these)."""

    def __init__(self, encoder, tokenizer, layer, embedding_key: str = "", pooled_output: str = "text_embeds"):
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.embedding_key = embedding_key  # which vectors of an SDXL embedding this encoder takes
        # options -> (which hidden state counted from the end, whether the final layer norm follows)
        self.layer = layer
        # the pooled vector: the projection ("text_embeds") or the EOS token's state ("pooler_output", Flux)
        self.pooled_output = pooled_output

    def encode_chunks(self, tokens: torch.Tensor, options: EncodeOptions,
                      fixes: Sequence[tuple[int, int, torch.Tensor]] = ()) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states [N, 77, C] for a batch of chunks, and the pooled output if any.

        `fixes`: (row, position in the 77 tokens, vectors [n, C]) written over the token
        embeddings before the transformer runs (textual inversion).
        """
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        if pad != eos:  # OpenCLIP pads with its own id after the first end-of-text token
            first_eos = (tokens == eos).int().argmax(dim=1, keepdim=True)
            positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
            tokens = tokens.masked_fill(positions > first_eos, pad)
        from_end, final_norm = self.layer(options)
        hook = None
        if fixes:
            # transformers' CLIPTextModel takes no inputs_embeds: overwrite the token embedding
            # layer's output for this one call through a forward hook, removed right after.
            def substitute(module, args, embedded):
                embedded = embedded.clone()
                for row, start, vectors in fixes:
                    embedded[row, start : start + vectors.shape[0]] = vectors.to(embedded.device, embedded.dtype)
                return embedded

            token_embedding = getattr(self.encoder, "text_model", self.encoder).embeddings.token_embedding
            hook = token_embedding.register_forward_hook(substitute)
        try:
            output = self.encoder(input_ids=tokens, output_hidden_states=True)
        finally:
            if hook is not None:
                hook.remove()
        hidden = output.hidden_states[-from_end]
        if final_norm:
            # transformers 5 flattened CLIPTextModel; the projection model still nests it.
            hidden = getattr(self.encoder, "text_model", self.encoder).final_layer_norm(hidden)
        return hidden, getattr(output, self.pooled_output, None)


class PromptEncoder:
    """Encodes groups of texts for one loaded model, with the encoders its family names."""

    def __init__(self, model: SDModel, embeddings=None, before_chunk: Callable[[], None] | None = None):
        """`embeddings`: the textual-inversion embeddings usable with `model`
        (`networks.embeddings.ModelEmbeddings`); None encodes names as plain words. `before_chunk` is called
        before each text-encoder call (a job's interrupt check: a long prompt with many scheduled texts takes
        many calls, all before the first denoising step)."""
        self.model = model
        self.embeddings = embeddings
        self.before_chunk = before_chunk
        self.used_embeddings: dict = {}  # name -> Embedding, every one placed in a text so far
        self.encoders = model.family.text_encoders(model)  # CLIP, with A1111's chunks and emphasis
        self.long_encoder = model.family.long_text_encoder(model)  # T5 or an LLM: one token sequence

    @torch.no_grad()
    def encode_group(
        self, texts: Sequence[str], options: EncodeOptions = EncodeOptions(), counts: Sequence[int] | None = None
    ) -> list[Conditioning]:
        """Encode distinct texts as one A1111 call would; `counts` says how often each
        text appears in that call (alternation repeats texts)."""
        counts = list(counts) if counts is not None else [1] * len(texts)
        outputs = []
        for encoder in self.encoders:
            chunked = [chunk_text(text, encoder.tokenizer, options, self.embeddings) for text in texts]
            for chunks in chunked:
                self.used_embeddings.update((e.name, e) for chunk in chunks for _, e in chunk.fixes)
            outputs.append(self._encode_chunked(encoder, chunked, counts, options))
        long_hidden = None
        if self.long_encoder is not None:
            if self.before_chunk is not None:
                self.before_chunk()
            long_hidden = self.long_encoder.encode(texts, options)
        crossattn, pooled = self.model.family.combine(self.model, outputs, long_hidden)
        return [Conditioning(crossattn[i], pooled[i] if pooled is not None else None) for i in range(len(texts))]

    def _encode_chunked(self, encoder: ClipTextEncoder, chunked: list[list[_Chunk]], counts: list[int], options: EncodeOptions):
        device = self.model.device
        chunk_count = max(len(chunks) for chunks in chunked)
        empty = _empty_chunk(encoder.tokenizer)
        weights = torch.tensor(counts, dtype=torch.float32, device=device)
        hidden_parts, pooled = [], None
        for index in range(chunk_count):
            batch = [chunks[index] if index < len(chunks) else empty for chunks in chunked]
            tokens = torch.tensor([c.tokens for c in batch], device=device)
            multipliers = torch.tensor([c.multipliers for c in batch], device=device)
            fixes = [(row, 1 + offset, e.vectors_for(encoder.embedding_key))  # 1 + : after BOS
                     for row, chunk in enumerate(batch) for offset, e in chunk.fixes]
            if self.before_chunk is not None:
                self.before_chunk()
            hidden, chunk_pooled = encoder.encode_chunks(tokens, options, fixes)
            hidden_parts.append(_apply_emphasis(hidden, multipliers, weights, options.emphasis))
            if index == 0:
                pooled = chunk_pooled
        return torch.cat(hidden_parts, dim=1), pooled

    def infotext_params(self) -> dict:
        """`TI hashes` for the embeddings used so far (empty when none were)."""
        if not self.used_embeddings:
            return {}
        return {"TI hashes": ", ".join(f"{name}: {e.short_hash}" for name, e in self.used_embeddings.items())}

    def zeros_like_empty(self, options: EncodeOptions = EncodeOptions()) -> Conditioning:
        """The conditioning for an empty negative prompt on families that use zeros (SDXL, as A1111 does)."""
        empty = self.encode_group([""], options)[0]
        pooled = torch.zeros_like(empty.pooled) if empty.pooled is not None else None
        return Conditioning(torch.zeros_like(empty.crossattn), pooled)


def _empty_chunk(tokenizer) -> _Chunk:
    """The chunk A1111 appends to equalise chunk counts: BOS, then end-of-text padding."""
    eos = tokenizer.eos_token_id
    return _Chunk([tokenizer.bos_token_id] + [eos] * (CHUNK_TOKENS + 1), [1.0] * (CHUNK_TOKENS + 2))


def _apply_emphasis(hidden: torch.Tensor, multipliers: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
    if mode in ("Ignore", "None"):
        return hidden
    scaled = hidden * multipliers.to(hidden.dtype).unsqueeze(-1)
    if mode == "No norm":
        return scaled
    # "Original": scale every token, then restore the mean of the whole call's batch.
    def batch_mean(z: torch.Tensor) -> torch.Tensor:
        return (z.float().mean(dim=(1, 2)) * weights).sum() / weights.sum()

    original, new = batch_mean(hidden), batch_mean(scaled)
    # A mean of exactly zero (an untrained encoder's final layer norm) would make 0/0 = NaN: keep the scale.
    ratio = torch.where(new == 0, torch.ones_like(new), original / new)
    return scaled * ratio.to(hidden.dtype)
