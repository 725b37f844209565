"""Run metrics and progress: points the runtime posts, downsampled series, heartbeats."""
