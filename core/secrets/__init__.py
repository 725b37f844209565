"""Secrets per org: write-only values runs name as `{secret: NAME}`, encrypted at rest."""
