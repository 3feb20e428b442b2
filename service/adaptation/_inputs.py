"""A fine-tune job's content: the bytes of the inputs its spec names by content key (images), as
files ``<inputs dir>/<hex>`` the job process reads, and their removal when the job ends.

The files hold sample content a purge may delete later: they live only while the job runs (like
the spec, which names them), and a restart removes any a stopped server left behind.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from service.domain.loop import CONTENT_KEY_PREFIX

log = logging.getLogger(__name__)
INPUTS_DIR = "inputs"  # in the job's directory
_KEY = re.compile(r"sha256:[0-9a-f]{64}")
_KEYS_PER_READ = 256  # content read from the store at a time: bounds the memory a job costs


def write_input(directory: Path, key: str, data: bytes) -> None:
    """``data`` as the file of ``key``; ValueError for anything but a content key, so that a
    file name can never leave the directory."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a content key: {key[:80]!r}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / key.removeprefix(CONTENT_KEY_PREFIX)).write_bytes(data)


def write_stored_inputs(
    directory: Path, keys: Collection[str], read: Callable[[list[str]], Mapping[str, bytes]]
) -> list[str]:
    """Write the content of ``keys``, read from the store a chunk at a time; the keys it no
    longer has (a purge deleted their samples after the job read them)."""
    wanted = sorted(keys)
    missing: list[str] = []
    for start in range(0, len(wanted), _KEYS_PER_READ):
        chunk = wanted[start : start + _KEYS_PER_READ]
        found = read(chunk)
        missing += [key for key in chunk if key not in found]
        for key, data in found.items():
            write_input(directory, key, data)
    return missing


def discard_inputs(job_dir: Path) -> None:
    """Remove the job's content files, however the job ended."""
    directory = job_dir / INPUTS_DIR
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("could not remove %s", directory, exc_info=True)
