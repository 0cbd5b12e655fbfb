"""A1111's REST API (/sdapi/v1) over the job queue; `register_api(app, state)` adds it to a FastAPI app,
`register_internal(app, state)` the /internal routes the UI polls."""

from .routes import register_api, register_internal

__all__ = ["register_api", "register_internal"]
