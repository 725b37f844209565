"""Runs: the spec users submit, the lifecycle, and the queries and rules around them."""
