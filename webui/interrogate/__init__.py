"""Interrogate: a prompt read from an image (A1111's "Interrogate CLIP"), free of the UI and HTTP layers.

`Interrogator(models_dir).interrogate(image, settings)` gives the text; models.py says where the models are
looked for and what the message says when they are not there; categories.py holds the word lists.
DeepBooru is not offered: its only packages are unmaintained and its weights a pickle.
"""

from .categories import Category, load_categories
from .interrogator import InterrogateSettings, Interrogator
from .models import InterrogateError, ModelsMissing, ModelUnreadable, find_models

MODELS = ("clip",)  # the `model` names /sdapi/v1/interrogate accepts

__all__ = ["MODELS", "Category", "InterrogateError", "InterrogateSettings", "Interrogator", "ModelUnreadable",
           "ModelsMissing", "find_models", "load_categories"]
