"""Executors: the only code that starts, stops and watches a run's processes on a cluster."""
