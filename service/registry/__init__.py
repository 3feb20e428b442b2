"""Model versions on disk (one directory per version) and the head pointer that names the
serving one."""

from service.registry._digest import version_digest
from service.registry._pointer import FilePointer, HeadPointer
from service.registry._registry import Head, ModelRegistry, StagedVersion, VersionInfo

__all__ = [
    "FilePointer",
    "Head",
    "HeadPointer",
    "ModelRegistry",
    "StagedVersion",
    "VersionInfo",
    "version_digest",
]
