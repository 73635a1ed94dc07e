"""Shared test configuration. Fakes of the forges live in ``tests/fakes/``."""
