"""Extra networks: LoRA cards (preview, base model, trigger words) that add their tag to the
prompt when clicked, with search and refresh."""

from __future__ import annotations

import gradio as gr
from PIL import Image, ImageDraw

from ..networks import library_for_flags
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


def extra_networks(state: SharedState, prompt: gr.Textbox, tab: str) -> None:
    library = library_for_flags(state.flags)

    def cards(query: str):
        shown = [f for f in library.files() if query.lower() in (f.name + " " + f.alias).lower()]
        return [(_preview(f.path), _caption(f)) for f in shown], [f.name for f in shown]

    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks"):
        with gr.Row():
            search = gr.Textbox(label="Search", scale=4, elem_id=f"{tab}_extra_search")
            refresh = gr.Button("Refresh", scale=1, elem_id=f"{tab}_extra_refresh")
        first_cards, first_names = cards("")
        names = gr.State(first_names)
        gallery = gr.Gallery(first_cards, label="Lora", columns=6, height="auto", allow_preview=False,
                             elem_id=f"{tab}_lora_cards")

    def show(query):
        return cards(query or "")

    def rescan(query):
        library.refresh()
        return cards(query or "")

    def insert(current: str, shown_names: list[str], evt: gr.SelectData):
        tag = f"<lora:{shown_names[evt.index]}:1>"  # A1111's default multiplier
        return f"{current.rstrip()} {tag}".strip() if tag not in current else current

    search.change(show, search, [gallery, names])
    refresh.click(rescan, search, [gallery, names])
    gallery.select(insert, [prompt, names], prompt)
