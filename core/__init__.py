"""Trainport's domain and persistence layer: the single owner of runs, tenants and their rules."""
