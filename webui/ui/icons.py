"""Icon buttons (refresh, random seed, reuse seed) that work without an emoji font.

A1111 labels these buttons with emoji; on a machine without an emoji font they draw as empty
boxes, and screen readers get nothing useful. Ours show symbols that common text fonts have
(DejaVu Sans, Segoe UI Symbol, Apple Symbols) and carry a title and aria-label. Gradio's Button
takes neither attribute, so a small page script sets them: from the title each button was
created with (`icon_button`), else from its symbol, which also names the emoji buttons that
extensions make with A1111's symbols.
"""

from __future__ import annotations

import json

import gradio as gr

REFRESH = "\u21bb"  # ↻ clockwise open circle arrow
RANDOM = "\u2684"  # ⚄ die face
REUSE = "\u267b\ufe0e"  # ♻ recycling symbol, asked for in its text form
SWAP = "\u21c5"  # ⇅ up and down arrows (A1111's width/height switch)

# Titles for the symbols extensions use (A1111's ui.py names them the same way).
SYMBOL_TITLES = {
    REFRESH: "Refresh",
    RANDOM: "Random seed",
    REUSE: "Reuse seed",
    SWAP: "Swap width and height",
    "\U0001f504": "Refresh",
    "\U0001f3b2\ufe0f": "Random seed",
    "\U0001f3b2": "Random seed",
    "\u267b\ufe0f": "Reuse seed",
    "\u267b": "Reuse seed",
    "\U0001f4c2": "Open folder",
    "\U0001f4be": "Save",
    "\U0001f5d1\ufe0f": "Delete",
    "\U0001f4cb": "Apply",
    "\u2199\ufe0f": "Read generation parameters",
    "\U0001f3b4": "Show extra networks",
    "\U0001f4d2": "Fill with all choices",
    "\u21ca": "Fill with all choices",  # the built-in X/Y/Z plot's
}


def icon_button(symbol: str, title: str, elem_id: str, **kwargs) -> gr.Button:
    """A small button showing `symbol`, with `title` as its tooltip and accessible name."""
    kwargs.setdefault("scale", 0)
    kwargs.setdefault("min_width", 40)
    button = gr.Button(symbol, elem_id=elem_id, **kwargs)
    button.webui_title = title  # read by label_buttons
    return button


def label_buttons(demo: gr.Blocks) -> None:
    """On page load, give every icon button its title and aria-label, and keep doing so for
    buttons drawn later (tabs and accordions render their contents when first opened)."""
    titles = {block.elem_id: block.webui_title for block in demo.blocks.values()
              if getattr(block, "webui_title", None) and block.elem_id}
    script = """() => {
        const byId = %s, bySymbol = %s;
        const label = (button) => {
            const title = byId[button.id] || bySymbol[button.textContent.trim()];
            if (title && !button.getAttribute("aria-label")) {
                button.title = title;
                button.setAttribute("aria-label", title);
            }
        };
        const scan = (root) => root.querySelectorAll("button").forEach(label);
        scan(document);
        new MutationObserver((records) => records.forEach((record) => record.addedNodes.forEach((node) => {
            if (node.nodeType !== Node.ELEMENT_NODE) return;
            if (node.tagName === "BUTTON") label(node);
            scan(node);
        }))).observe(document.body, {childList: true, subtree: true});
        return [];
    }""" % (json.dumps(titles), json.dumps(SYMBOL_TITLES))
    demo.load(None, None, None, js=script)
