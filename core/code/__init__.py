"""Code that travels with a run (issue 14): content-addressed snapshots and git sources."""
