"""loopserve: a gRPC model server that keeps itself accurate."""

__version__ = "0.1.0"
