"""Tests of the in-run runtime (trainport.runtime) and the built-in lm recipe."""
