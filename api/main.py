"""The ASGI entry point: `uvicorn api.main:app`."""

from api.app import create_app
from core import heap

app = create_app()
heap.start_up()  # this module is a served process's: tests call create_app themselves
