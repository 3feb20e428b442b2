"""Durable storage of the closed loop: posted samples and adaptation jobs."""

from service.store._interface import JobStore, SampleStore
from service.store._sqlite import SQLiteStore

__all__ = ["JobStore", "SQLiteStore", "SampleStore"]
