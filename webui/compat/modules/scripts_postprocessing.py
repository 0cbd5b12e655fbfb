"""A1111's `modules.scripts_postprocessing` (Extras-tab scripts): the classes, so such scripts import.
This WebUI has no Extras tab yet, so they are not run."""

from __future__ import annotations

from webui import compat


class PostprocessedImage:
    def __init__(self, image):
        self.image = image
        self.info: dict = {}
        self.shared = None
        self.extra_images: list = []
        self.nametags: list = []
        self.disable_processing = False
        self.caption = None


class ScriptPostprocessing:
    filename = None
    controls = None
    args_from = None
    args_to = None
    order = 1000
    name = None
    group = None

    def ui(self):
        pass

    def process(self, pp, **args):
        pass

    def process_firstpass(self, pp, **args):
        pass

    def image_changed(self):
        pass


__getattr__ = compat.report_missing_names(__name__)
