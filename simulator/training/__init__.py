"""Training: what happens at a client's compute event (surrogate model or real steps)."""
