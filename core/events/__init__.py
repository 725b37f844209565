"""The org event log read as a stream: run events in resource_version order (issue 19)."""
