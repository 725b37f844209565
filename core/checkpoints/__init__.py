"""Checkpoints: where a run writes them, registering committed ones, listing and serving them."""
