"""A run's own storage, reached through the API with its run token."""
