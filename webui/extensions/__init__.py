"""A1111-compatible extensions: callbacks, the Script API and its runners, the `p` adapter.

Generation code (webui.generation) never imports this package; it calls a neutral hooks object
that `processing.py` here implements.
"""
