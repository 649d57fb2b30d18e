"""Up-to-date checks for recipe stages.

A stage writes a stamp (a digest of its inputs) after it finished; a re-run whose inputs digest to the same value
does nothing. Small files are digested by content (a data dir rewritten with the same content is unchanged); large
files (audio, archives) by size and modification time, so checking a corpus does not read its audio.
"""

from __future__ import annotations

import hashlib
import os

STAGE0_DONE = ".stage0.done"  # data_dir/STAGE0_DONE: the one mark of a complete stage 0 (ser.bin.prepare_data)

CONTENT_LIMIT = 1 << 20  # files up to 1 MiB are digested by content


def _files(path: str):
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith("."):
                    yield os.path.join(root, name)
    else:
        yield path


def inputs_digest(paths: list[str], extra: str = "") -> str:
    digest = hashlib.sha1(extra.encode())
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"stage input {path} does not exist")
        for name in _files(path):
            st = os.stat(name)
            digest.update(name.encode() + b"\0")
            if st.st_size <= CONTENT_LIMIT:
                with open(name, "rb") as f:
                    digest.update(f.read())
            else:
                digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def is_up_to_date(stamp: str, paths: list[str], extra: str = "") -> bool:
    if not os.path.isfile(stamp):
        return False
    with open(stamp) as f:
        return f.read().strip() == inputs_digest(paths, extra)


def write_stamp(stamp: str, paths: list[str], extra: str = "") -> None:
    from ser.atomic import write_text

    write_text(stamp, inputs_digest(paths, extra) + "\n")
