"""Tests of the run logs route: text and NDJSON, following a live run, and API replicas."""
