"""Datasets: named collections of immutable, content-addressed versions that runs pin."""
