"""A1111's `modules` package, as extensions import it (see webui/compat/__init__.py)."""
