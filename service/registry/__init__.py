"""Model versions on disk: one directory per version and an atomic ``current`` pointer."""

from service.registry._registry import ModelRegistry, StagedVersion, VersionInfo

__all__ = ["ModelRegistry", "StagedVersion", "VersionInfo"]
