"""Atomic writes: an output is either complete or absent, never half written.

Every output of ser goes through ``atomic_path``: the writer fills a temporary file in the destination's directory,
which is renamed over the destination only when the writer finishes; on any error it is removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to; it becomes ``path`` when the block ends without error.
    The temporary name keeps the extension (numpy's savez adds ``.npz`` to names without it)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    ext = os.path.splitext(path)[1]
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp" + ext)
    except OSError as error:  # name the file being written, not the temporary name
        raise type(error)(error.errno, f"{error.strerror} (cannot create files in {directory})", path) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS and error.filename in (None, tmp):
            raise full_disk(path) from error  # a bare "[Errno 28] No space left on device": name the file
        if isinstance(error, Exception) and not isinstance(error, OSError) and _disk_full(directory):
            # Writers such as torch.save report a full disk in their own words ("iostream error").
            raise full_disk(path) from error
        raise


FULL_DISK_BYTES = 1 << 20  # less free space than this, after a failed write, is a full disk
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def full_disk(path: str) -> OSError:
    """The error of a full disk (or quota) met while writing ``path``, naming it."""
    return OSError(errno.ENOSPC, f"No space left on device while writing {path}", path)


def _disk_full(directory: str) -> bool:
    try:
        return shutil.disk_usage(directory).free < FULL_DISK_BYTES
    except OSError:
        return False


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data``; a failed write (a full disk included) removes the temporary file and names ``path``."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
    except OSError as error:
        if error.filename == path:
            raise
        raise type(error)(error.errno, f"{error.strerror} while writing {path}", path) from None


def write_json(path: str, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def copy_file(src: str, dst: str) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
