"""The `trainport` command line, built on the SDK (`pip install 'trainport[cli]'`)."""

from trainport.cli.app import app, main, run

__all__ = ["app", "main", "run"]
