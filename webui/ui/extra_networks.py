"""Extra networks: cards for LoRAs (preview, base model, trigger words), embeddings and
checkpoints, with search and refresh."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image, ImageDraw

from ..networks import library_for_flags
from ..networks.embeddings import database_for
from ..state import SharedState

PREVIEW_SUFFIXES = (".png", ".preview.png", ".jpg", ".jpeg", ".webp")  # beside the file, as A1111
CARD_SIZE = 160


def _preview(path) -> Image.Image | str:
    for suffix in PREVIEW_SUFFIXES:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return str(candidate)
    card = Image.new("RGB", (CARD_SIZE, CARD_SIZE), (58, 62, 74))  # a plain card without a preview
    ImageDraw.Draw(card).text((10, CARD_SIZE - 24), path.stem[:22], fill=(230, 230, 230))
    return card


def _caption(file) -> str:
    """Name, then what the metadata says: base model and the most used training tags."""
    meta = file.metadata
    parts = [file.name]
    if isinstance(meta.get("ss_base_model_version"), str):
        parts.append(meta["ss_base_model_version"])
    tags = meta.get("ss_tag_frequency")
    if isinstance(tags, dict):
        counts: dict[str, int] = {}
        for folder in tags.values():
            if isinstance(folder, dict):
                for tag, count in folder.items():
                    counts[tag] = counts.get(tag, 0) + (count if isinstance(count, int) else 0)
        top = sorted(counts, key=counts.get, reverse=True)[:3]
        if top:
            parts.append("triggers: " + ", ".join(top))
    return " | ".join(parts)


@dataclass(frozen=True)
class Card:
    name: str
    path: Path
    caption: str
    insert: str  # added to the prompt on click; "" for checkpoints, which are chosen instead


def _lora_cards(state: SharedState, rescan: bool) -> list[Card]:
    library = library_for_flags(state.flags)
    if rescan:
        library.refresh()
    return [Card(f.name, f.path, _caption(f), f"<lora:{f.name}:1>") for f in library.files()]  # A1111's default weight


def _embedding_cards(state: SharedState, rescan: bool) -> list[Card]:
    database = database_for(state)
    if rescan:
        database.refresh(force=True)
    listing = database.for_model(state.models.slot.model)
    return [Card(name, e.path, f"{name} | {e.vectors} vectors", name) for name, e in listing.loaded.items()]


def _checkpoint_cards(state: SharedState, rescan: bool) -> list[Card]:
    infos = state.models.refresh() if rescan else state.models.checkpoints()
    return [Card(info.name, info.path, info.title, "") for info in infos]


SECTIONS = {"Lora": _lora_cards, "Textual Inversion": _embedding_cards, "Checkpoints": _checkpoint_cards}


def extra_networks(state: SharedState, prompt: gr.Textbox, tab: str) -> None:
    """Cards for LoRAs, embeddings and checkpoints: a click adds the tag (or the embedding's
    name) to the prompt, or chooses the checkpoint for the next job."""
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks"):
        with gr.Row():
            search = gr.Textbox(label="Search", scale=4, elem_id=f"{tab}_extra_search")
            refresh = gr.Button("Refresh", scale=1, elem_id=f"{tab}_extra_refresh")
        with gr.Tabs():
            for label, source in SECTIONS.items():
                with gr.Tab(label):
                    _section(state, prompt, tab, label, source, search, refresh)


def _section(state, prompt, tab, label, source, search, refresh) -> None:
    def shown(query: str, rescan: bool = False):
        cards = [c for c in source(state, rescan) if (query or "").lower() in c.caption.lower()]
        return [(_preview(c.path), c.caption) for c in cards], cards

    first_items, first_cards = shown("")
    cards_state = gr.State(first_cards)
    gallery = gr.Gallery(first_items, label=label, columns=6, height="auto", allow_preview=False,
                         elem_id=f"{tab}_{label.lower().replace(' ', '_')}_cards")

    def choose(current: str, cards: list[Card], evt: gr.SelectData):
        card = cards[evt.index]
        if not card.insert:  # a checkpoint: the queue loads it for the next job
            state.options.update({"sd_model_checkpoint": state.models.find(card.name).title})
            gr.Info(f"{card.name} will be used for the next image")
            return current
        return current if card.insert in current else f"{current.rstrip()} {card.insert}".strip()

    search.change(shown, search, [gallery, cards_state])
    refresh.click(lambda query: shown(query, rescan=True), search, [gallery, cards_state])
    gallery.select(choose, [prompt, cards_state], prompt)
