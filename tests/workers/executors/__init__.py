"""Tests of the executors: real processes on this machine."""
