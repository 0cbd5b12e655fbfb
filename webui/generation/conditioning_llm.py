"""Conditioning from a chat LLM's hidden states (Z-Image's Qwen3): the prompt goes inside the model's chat
template, the second-to-last layer's states of the real tokens (no padding) are the conditioning.

Emphasis multiplies the prompt tokens' input embeddings, as for T5 (Forge's rule); the template's own
tokens keep weight 1. Nothing is truncated: a long prompt gives a longer sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prompt_parser import BREAK, attention_runs

_SLOT = "\u0000PROMPT\u0000"  # stands for the prompt while the chat template is filled in


class ChatTextEncoder:
    def __init__(self, encoder, tokenizer, layer: int = -2):
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.layer = layer
        filled = tokenizer.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                               add_generation_prompt=True, enable_thinking=True)
        self.before, self.after = filled.split(_SLOT)

    def tokens(self, text: str, emphasis: str = "Original") -> tuple[list[int], list[float]]:
        """Token ids of the filled-in template and one weight per token (1 outside the prompt)."""
        runs: Sequence[tuple[str, float]] = ((text, 1.0),) if emphasis == "None" else attention_runs(text)
        pieces = [(self.before, 1.0), *((run, w) for run, w in runs if (run, w) != BREAK and run), (self.after, 1.0)]
        encoded = self.tokenizer([piece for piece, _ in pieces], add_special_tokens=False)["input_ids"]
        ids: list[int] = []
        weights: list[float] = []
        for piece_ids, (_, weight) in zip(encoded, pieces):
            ids += piece_ids
            weights += [1.0 if emphasis in ("Ignore", "None") else weight] * len(piece_ids)
        return ids, weights

    @torch.no_grad()
    def encode(self, texts: Sequence[str], options) -> list[torch.Tensor]:
        """One [tokens, C] tensor per text, each as long as its own tokens."""
        device = next(self.encoder.parameters()).device
        embed = self.encoder.get_input_embeddings()
        results = []
        for text in texts:  # one at a time: no padding to mask
            ids, weights = self.tokens(text, options.emphasis)
            inputs = embed(torch.tensor([ids], device=device))
            inputs = inputs * torch.tensor(weights, device=device, dtype=inputs.dtype)[None, :, None]
            hidden = self.encoder(inputs_embeds=inputs, output_hidden_states=True).hidden_states[self.layer]
            results.append(hidden[0])
        return results
