"""Trainport's HTTP control plane: FastAPI routes over the services in `core`."""
