"""Checkpoints: discovery, family detection, offline loading, hashes."""
