"""The WebUI: generation backend, job queue, Gradio UI and REST API (being built)."""
