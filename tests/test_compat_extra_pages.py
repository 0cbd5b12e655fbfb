"""modules.ui_extra_networks: an extension's ExtraNetworksPage, registered with register_page, becomes a tab of
cards in the Extra networks panel; a card adds the item's prompt (A1111 writes it as JS code) to the prompt."""

from __future__ import annotations

import pytest
from PIL import Image

from script_helpers import make_state
from webui import compat


@pytest.fixture
def state(tmp_path):
    state = make_state(tmp_path)
    compat.install()
    compat.bind(state)
    return state


def make_page(folder):
    from modules import ui_extra_networks
    from modules.ui_extra_networks import ExtraNetworksPage, quote_js

    class StylesPage(ExtraNetworksPage):  # as an extension writes one
        def __init__(self):
            super().__init__("Wildcards")
            self.refreshed = 0

        def refresh(self):
            self.refreshed += 1

        def list_items(self):
            for path in sorted(folder.glob("*.wild")):
                yield {
                    "name": path.stem,
                    "filename": str(path),
                    "description": self.find_description(str(path)) or "",
                    "preview": self.link_preview(str(path)),
                    "local_preview": self.find_preview(str(path)),
                    "search_term": self.search_terms_from_path(str(path), [str(folder)]),
                    "prompt": quote_js(f"__{path.stem}:") + " + opts.extra_networks_default_multiplier + " + quote_js("__"),
                }

    page = StylesPage()
    ui_extra_networks.register_page(page)
    return page, ui_extra_networks


def test_a_registered_page_lists_cards_whose_click_text_is_the_items_prompt(state, tmp_path):
    folder = tmp_path / "wildcards"
    folder.mkdir()
    (folder / "colours.wild").write_text("red\nblue\n")
    (folder / "colours.description.txt").write_text("Colour names")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "colours.preview.png")
    (folder / "animals.wild").write_text("cat\n")
    page, ui_extra_networks = make_page(folder)
    assert ui_extra_networks.extra_pages == [page] and state.extra_networks.pages == [page]

    from webui.ui.extra_networks import page_cards

    state.options.update({"extra_networks_default_multiplier": 0.5})
    cards = {card.name: card for card in page_cards(state, True, page=page)}
    assert page.refreshed == 1
    assert cards["colours"].insert == "__colours:0.5__" and cards["animals"].insert == "__animals:0.5__"
    assert cards["colours"].path == folder / "colours.preview.png"  # the preview beside the file
    assert cards["animals"].path == folder / "animals.wild"
    assert "Colour names" in cards["colours"].caption  # searched by the panel's search box
    assert page.search_terms_from_path(str(folder / "animals.wild"), [str(folder)]) == "/animals.wild"


def test_prompt_expressions_and_a_page_that_fails(state, tmp_path):
    from modules.ui_extra_networks import ExtraNetworksPage, prompt_text, quote_js, register_page

    assert prompt_text(quote_js('say "hi"'), {}) == 'say "hi"'
    assert prompt_text("'<lyco:x:' + opts.m + '>'", {"m": 2}) == "<lyco:x:2>"
    assert prompt_text("not js at all", {}) == "not js at all"

    class Broken(ExtraNetworksPage):
        def list_items(self):
            raise OSError("disk gone")

    register_page(Broken("Broken"))
    from webui.ui.extra_networks import page_cards
    assert page_cards(state, False, page=state.extra_networks.pages[-1]) == []  # the panel goes on without it
    with pytest.raises(NotImplementedError):
        list(ExtraNetworksPage("Bare").list_items())
