"""Extra networks: cards for LoRAs (preview, base model, trigger words), embeddings and
checkpoints, with search and refresh."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image, ImageDraw, ImageFont

from ..networks import library_for_flags
from ..networks.embeddings import database_for
from ..networks.hypernet_network import hypernetwork_library
from ..state import SharedState
from . import icons
from .common import Sessions, choose_setting

PREVIEW_SUFFIXES = (".png", ".preview.png", ".jpg", ".jpeg", ".webp")  # beside the file, as A1111
CARD_SIZE = 160
log = logging.getLogger(__name__)


def _preview(path) -> Image.Image | str:
    for suffix in PREVIEW_SUFFIXES:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return str(candidate)
    card = Image.new("RGB", (CARD_SIZE, CARD_SIZE), (58, 62, 74))  # a plain card without a preview: its name
    ImageDraw.Draw(card).text((CARD_SIZE / 2, CARD_SIZE / 2), path.stem[:14], fill=(230, 230, 230),
                              font=ImageFont.load_default(size=18), anchor="mm")
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


def _hypernetwork_cards(state: SharedState, rescan: bool) -> list[Card]:
    library = hypernetwork_library(state)
    files = library.refresh() if rescan else library.files()
    return [Card(f.name, f.path, f.name, f"<hypernet:{f.name}:1>") for f in files]


def _embedding_cards(state: SharedState, rescan: bool) -> list[Card]:
    database = database_for(state)
    if rescan:
        database.refresh(force=True)
    listing = database.for_model(state.models.slot.model)
    return [Card(name, e.path, f"{name} | {e.vectors} vectors", name) for name, e in listing.loaded.items()]


def _checkpoint_cards(state: SharedState, rescan: bool) -> list[Card]:
    infos = state.models.refresh() if rescan else state.models.checkpoints()
    return [Card(info.name, info.path, info.title, "") for info in infos]


def _empty_hint(what: str, folder) -> str:
    return f"No {what} yet: put them in `{folder}` and press {icons.REFRESH} Refresh."


def _lora_hint(state: SharedState) -> str:
    return _empty_hint("LoRA files (`.safetensors`)", library_for_flags(state.flags).directory)


def _hypernetwork_hint(state: SharedState) -> str:
    return _empty_hint("hypernetworks (A1111's `.pt` files)", hypernetwork_library(state).directory)


def _embedding_hint(state: SharedState) -> str:
    directory = database_for(state).directory
    return _empty_hint("textual inversion embeddings (`.safetensors`, `.pt`) for this model", directory)


def _checkpoint_hint(state: SharedState) -> str:
    return _empty_hint("checkpoints (`.safetensors`)", state.models.models_dir)


# Tab label -> (its cards, what to say while there are none).
SECTIONS = {
    "Lora": (_lora_cards, _lora_hint),
    "Textual Inversion": (_embedding_cards, _embedding_hint),
    "Hypernetworks": (_hypernetwork_cards, _hypernetwork_hint),
    "Checkpoints": (_checkpoint_cards, _checkpoint_hint),
}


def extra_networks(state: SharedState, prompt: gr.Textbox, tab: str, sessions: Sessions) -> None:
    """Cards for LoRAs, embeddings and checkpoints: a click adds the tag (or the embedding's
    name) to the prompt, or chooses the checkpoint for the next job."""
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks"):
        with gr.Row():
            search = gr.Textbox(label="Search", scale=4, elem_id=f"{tab}_extra_search")
            refresh = icons.icon_button(f"{icons.REFRESH} Refresh", "Look for new LoRA, embedding and checkpoint files",
                                        f"{tab}_extra_refresh", scale=1)
        with gr.Tabs():
            for label, (source, hint) in SECTIONS.items():
                with gr.Tab(label):
                    _section(state, prompt, tab, label, source, hint, search, refresh, sessions)
            for page in state.extra_networks.pages:  # extensions' pages (modules.ui_extra_networks)
                with gr.Tab(page.title):
                    _section(state, prompt, tab, page.title, functools.partial(page_cards, page=page),
                             functools.partial(_page_hint, page=page), search, refresh, sessions)


def page_cards(state: SharedState, rescan: bool, page) -> list[Card]:
    """An extension page's items as cards (A1111's item dicts: name, filename, description, prompt as JS code,
    local_preview). A page that fails lists nothing; the log says why."""
    from modules.ui_extra_networks import prompt_text

    try:
        if rescan:
            page.refresh()
        items = list(page.list_items())
    except Exception:
        log.exception("the extra networks page %r could not list its items", getattr(page, "title", page))
        return []
    options = state.options.as_dict()
    cards = []
    for item in items:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        name = str(item["name"])
        path = Path(item.get("local_preview") or item.get("filename") or name)
        caption = " | ".join(str(part) for part in (name, item.get("description")) if part)
        insert = prompt_text(str(item.get("prompt") or ""), options) or name  # never "" (that means a checkpoint)
        cards.append(Card(name, path, caption, insert))
    return cards


def _page_hint(state: SharedState, page) -> str:
    return f"The {page.title} page lists nothing (yet); press {icons.REFRESH} Refresh after adding files."


def _section(state, prompt, tab, label, source, hint, search, refresh, sessions) -> None:
    def listing(query: str, rescan: bool = False):
        """(gallery items, their cards, a message in place of the gallery or "")."""
        every = source(state, rescan)
        cards = [c for c in every if (query or "").lower() in c.caption.lower()]
        message = hint(state) if not every else "" if cards else f"Nothing matches \"{query}\"."
        return [(_preview(c.path), c.caption) for c in cards], cards, message

    def shown(query: str, rescan: bool = False):
        items, cards, message = listing(query, rescan)
        return gr.update(value=items, visible=bool(cards)), cards, gr.update(value=message, visible=bool(message))

    key = f"{tab}_{label.lower().replace(' ', '_')}"
    items, cards, message = listing("")
    cards_state = gr.State(cards)
    # Without cards: where the files go, instead of Gradio's empty image placeholder.
    empty = gr.Markdown(message, visible=bool(message), elem_id=f"{key}_empty")
    # Six columns even for one card: fitting the columns to the cards made a lone card as wide as the panel.
    gallery = gr.Gallery(items, label=label, columns=6, height="auto", allow_preview=False, fit_columns=False,
                         visible=bool(cards), elem_id=f"{key}_cards")

    def choose(current: str, cards: list[Card], evt: gr.SelectData, request: gr.Request):
        card = cards[evt.index]
        if not card.insert:  # a checkpoint: the queue loads it for the next job (as the checkpoint list's choice)
            choose_setting(state, sessions, request, "sd_model_checkpoint", state.models.find(card.name).title)
            gr.Info(f"{card.name} will be used for the next image")
            return current
        return current if card.insert in current else f"{current.rstrip()} {card.insert}".strip()

    search.change(shown, search, [gallery, cards_state, empty])
    refresh.click(lambda query: shown(query, rescan=True), search, [gallery, cards_state, empty])
    gallery.select(choose, [prompt, cards_state], prompt)
