"""Checkpoint I/O: official-file conversion, our model folders, export back to the official layout."""
