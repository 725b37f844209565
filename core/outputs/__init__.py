"""A run's outputs: files matching its `outputs` globs, kept when each attempt ends."""
