"""The ASGI entry point: `uvicorn api.main:app`."""

from api.app import create_app
from core import heap
from core.settings import get_settings

app = create_app()
heap.start_up(get_settings().gc_young_threshold)  # a served process's: tests call create_app
