"""T5 text conditioning (SD3, Flux, Chroma): one token sequence per text, never truncated.

CLIP's 75-token chunks do not apply: T5 reads the whole prompt with relative positions, so a long prompt
makes a longer sequence rather than being cut (diffusers cuts at `max_sequence_length`; we only pad up
to it). Emphasis multiplies the token embeddings before the encoder runs, as Forge does, with no mean
restore. `BREAK` has no meaning for one sequence and is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prompt_parser import BREAK, attention_runs


class T5TextEncoder:
    def __init__(self, encoder, tokenizer, min_length: int, *, masked_padding: bool = False):
        """`min_length`: pad shorter texts to this many tokens (the length the model was trained with).
        `masked_padding` (Chroma): no padding to `min_length`; the encoder sees the text, its end token
        and one masked pad token, as the family's pipeline feeds its transformer."""
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.min_length = min_length
        self.masked_padding = masked_padding

    def tokens(self, text: str, emphasis: str = "Original") -> tuple[list[int], list[float]]:
        """Token ids (ending with the end token) and one emphasis weight per token."""
        runs: Sequence[tuple[str, float]] = ((text, 1.0),) if emphasis == "None" else attention_runs(text)
        runs = [run for run in runs if run != BREAK and run[0]]
        ids: list[int] = []
        weights: list[float] = []
        if runs:
            encoded = self.tokenizer([run for run, _ in runs], add_special_tokens=False)["input_ids"]
            for run_ids, (_, weight) in zip(encoded, runs):
                ids += run_ids
                weights += [1.0 if emphasis in ("Ignore", "None") else weight] * len(run_ids)
        return ids + [self.tokenizer.eos_token_id], weights + [1.0]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], options) -> torch.Tensor:
        """[N, tokens, C] hidden states for `texts`; every row has the same length (the longest text's)."""
        rows = [self.tokens(text, options.emphasis) for text in texts]
        pad = self.tokenizer.pad_token_id
        if self.masked_padding:
            length = max(len(ids) for ids, _ in rows) + 1
        else:
            length = max(self.min_length, max(len(ids) for ids, _ in rows))
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        weights = torch.ones(len(rows), length)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for row, (row_ids, row_weights) in enumerate(rows):
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            weights[row, : len(row_weights)] = torch.tensor(row_weights)
            mask[row, : len(row_ids)] = 1
        device = next(self.encoder.parameters()).device
        embeddings = self.encoder.get_input_embeddings()(ids.to(device))
        embeddings = embeddings * weights.to(device, embeddings.dtype).unsqueeze(-1)
        attention = mask.to(device) if self.masked_padding else None
        return self.encoder(inputs_embeds=embeddings, attention_mask=attention).last_hidden_state
