"""A version's content digest: recorded at publish, checked before a process trusts the files
(a copy on a shared volume can be incomplete or altered)."""

from __future__ import annotations

import hashlib
from pathlib import Path

META_FILE = "meta.json"  # records the digest, so it is not part of it
_CHUNK = 1 << 20


def version_digest(path: Path) -> str:
    """``sha256:<hex>`` over every file under ``path`` except meta.json, in sorted relative-path
    order; each file contributes its path, its size and its content, so renaming or moving bytes
    between files changes the digest too."""
    digest = hashlib.sha256()
    files = sorted(
        (p.relative_to(path).as_posix(), p)
        for p in path.rglob("*")
        if p.is_file() and p.relative_to(path).as_posix() != META_FILE
    )
    for relative, file in files:
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(file.stat().st_size.to_bytes(8, "big"))
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
