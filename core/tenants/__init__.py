"""Tenants: organisations, their projects, and the API keys that act for them."""
