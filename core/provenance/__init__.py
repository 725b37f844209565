"""Provenance: the signed record of what a run was made from and where each attempt ran."""
