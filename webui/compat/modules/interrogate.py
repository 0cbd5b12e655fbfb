"""A1111's `modules.interrogate`: the Interrogate CLIP object extensions reach as `shared.interrogator`,
over the WebUI's one interrogator (webui/interrogate)."""

from __future__ import annotations

import webui.compat as compat


class InterrogateModels:
    """`interrogate(pil_image)` -> the prompt text; missing models raise an InterrogateError that says where
    they go (A1111 appended "<error>" to the text instead, which a script cannot tell from a caption)."""

    def interrogate(self, pil_image) -> str:
        from webui.interrogate.service import interrogate_image

        return interrogate_image(compat.state(), pil_image)

    def unload(self) -> None:
        from webui.interrogate.service import state_interrogator

        state_interrogator(compat.state()).unload()


def category_types() -> list[str]:
    """The names of the lists CLIP ranks against: ours, and the user's in models/clip_interrogator."""
    from webui.interrogate import load_categories
    from webui.interrogate.models import CLIP_FOLDER

    return [category.name for category in load_categories(compat.state().flags.models_dir / CLIP_FOLDER)]


interrogator = InterrogateModels()
