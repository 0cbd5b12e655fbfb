"""Tiny random-weight BLIP (captions) and CLIP (ranking) models, built in code and saved as real
Hugging Face folders (config.json, model.safetensors, processor and tokenizer files), as a user's copies are."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor, CLIPConfig,
    CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer,
)

from tiny_models import TOKENIZER_DIR

# A BERT-style vocabulary just big enough for captions: special tokens first, [DEC] starts a caption.
CAPTION_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "painting", "of", "the", "cat",
                 "dog", "red", "blue", "house", "tree", "on", "with", "and", "small", "big", "in", "garden"]
SMALL_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                    patch_size=8)


def write_tiny_blip(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(CAPTION_WORDS) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]")
    ids = {word: i for i, word in enumerate(CAPTION_WORDS)}
    config = BlipConfig(
        vision_config=SMALL_VISION,
        text_config=dict(vocab_size=len(CAPTION_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, encoder_hidden_size=32, max_position_embeddings=64,
                         bos_token_id=ids["[DEC]"], sep_token_id=ids["[SEP]"], eos_token_id=ids["[SEP]"],
                         pad_token_id=ids["[PAD]"]),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407),
        vision_config=SMALL_VISION, projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_hf_cache_repo(cache: Path, repo: str, write) -> Path:
    """`write(folder)` into a snapshot of `repo` laid out as the Hugging Face cache keeps it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit, encoding="utf-8")
    return write(root / "snapshots" / commit)
