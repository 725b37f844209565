"""Scheduling: the cluster registry, quotas, the admission pass, and why a run still waits."""
