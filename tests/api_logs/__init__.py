"""Tests of durable run logs: the log store and the logs route."""
