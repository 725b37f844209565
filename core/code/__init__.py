"""Code that travels with a run: content-addressed snapshots and git sources."""
