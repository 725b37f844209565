"""Webhooks: an org's endpoints, the events they receive and their signed deliveries."""
