"""The small built-in demo model: its procedural data set and its training script."""
