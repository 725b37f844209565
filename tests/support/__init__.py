"""Helpers shared by the test packages: plain functions and types, no fixtures.

Import them from here, not from another package's conftest module (a conftest is pytest's to
load; importing one runs its fixtures' module a second time under another name).
"""
