"""Frozen self-supervised features computed once per utterance (the ``ssl_cached`` front-end's inputs).

A cache is a Kaldi-style data dir: ``feats.scp`` and ``utt2num_frames`` over kaldiio arks of the frames that
``StateExtractor`` (ser.models.ssl_cache) gives each utterance alone, and ``ssl_cache.json``, its record. float32
is stored as Kaldi float matrices; float16 as NumPy arrays inside the ark (kaldiio reads both; Kaldi's own tools
read the float32 ones only).

The record names what the frames depend on (``settings``: the checkpoint's content digest, layer, stored dtype,
normalize_wave) and their key, a digest of those settings: the cache of other settings lives under another key,
so it is never reused, and a front-end whose settings differ from a cache's record refuses it (SSLCacheError,
naming the field). It also holds the digest of the wav.scp the frames came from, which ser.bin.cache_ssl checks
to recompute a cache whose audio changed.
"""

from __future__ import annotations

import hashlib
import json
import os

from ser.datadir import DataDirError

CACHE_RECORD = "ssl_cache.json"
CACHE_DTYPES = ("float16", "float32")
SETTINGS = ("checkpoint", "layer", "dtype", "normalize_wave")


class SSLCacheError(DataDirError):
    pass


_digests: dict[tuple, str] = {}


SAMPLE_BYTES = 1 << 20  # a checkpoint file's first and last MiB are read whenever its record is reused


def _sample_digest(path: str, size: int) -> str:
    """SHA-256 of a file's first and last SAMPLE_BYTES (the whole file when it is no longer than both)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def checkpoint_files(path: str) -> list[list]:
    """[relative name, size, modification time, digest of the first and last MiB] of every regular file of a
    checkpoint directory, sorted."""
    if not os.path.isdir(path):
        raise SSLCacheError(f"frontend_conf.path: {path!r} is not a checkpoint directory")
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            if os.path.isfile(full):
                st = os.stat(full)
                files.append([os.path.relpath(full, path), st.st_size, st.st_mtime_ns,
                              _sample_digest(full, st.st_size)])
    return files


def content_digest(path: str, files: list[list]) -> str:
    """SHA-256 of every file's relative name and whole content."""
    digest = hashlib.sha256()
    for rel, *_ in files:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(path, rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def checkpoint_digest(path: str, record: dict | None = None) -> str:
    """SHA-256 of a checkpoint directory: every regular file's relative name and content. Not read whole again
    when the files' names, sizes, modification times and first and last MiB are those a cache ``record`` holds for
    this directory (the digest it holds), nor twice in one process. So a replaced file is detected unless it keeps
    its size, time, first and last MiB and differs only in between (content_digest then tells them apart)."""
    files = checkpoint_files(path)
    if record and record.get("checkpoint_path") == os.path.abspath(path) and record.get("checkpoint_files") == files:
        return record["settings"]["checkpoint"]
    signature = (os.path.abspath(path), json.dumps(files))
    if signature not in _digests:
        _digests[signature] = content_digest(path, files)
    return _digests[signature]


def cache_settings(conf: dict, record: dict | None = None) -> dict:
    """What a cache's frames depend on, for an ssl_cached frontend_conf (a cache ``record`` spares re-reading an
    unchanged checkpoint, see checkpoint_digest)."""
    if not conf["path"]:
        raise SSLCacheError("frontend_conf.path is empty: the ssl_cached front-end needs a local checkpoint "
                            "directory (its content names the cache)")
    return {"checkpoint": checkpoint_digest(conf["path"], record), "layer": conf["layer"], "dtype": conf["dtype"],
            "normalize_wave": normalize_wave_of(conf)}


def normalize_wave_of(conf: dict) -> bool:
    """An ssl_cached frontend_conf's normalize_wave; "auto" is false for a Whisper checkpoint (Whisper's own input
    scaling, the ``whisper`` front-end's default) and true for the others (``ssl``'s default)."""
    if conf["normalize_wave"] != "auto":
        return conf["normalize_wave"]
    from ser.models.ssl import SSL_MODEL_TYPES, WHISPER_MODEL_TYPES, checkpoint_model_type  # torch: when asked

    return checkpoint_model_type(conf["path"], False, "", SSL_MODEL_TYPES + WHISPER_MODEL_TYPES) != "whisper"


def record_of_checkpoint(cache_root: str, path: str) -> dict | None:
    """A record under cache_root of a cache made from the checkpoint directory ``path`` as its files are now (so
    its digest holds: see checkpoint_digest), or None."""
    import glob

    if not os.path.isdir(path):
        return None
    files = checkpoint_files(path)
    for record_path in sorted(glob.glob(os.path.join(glob.escape(cache_root), "*", "all", CACHE_RECORD))):
        with open(record_path) as f:
            record = json.load(f)
        if record.get("checkpoint_path") == os.path.abspath(path) and record.get("checkpoint_files") == files:
            return record
    return None


def cache_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def read_record(data_dir: str) -> dict:
    path = os.path.join(data_dir, CACHE_RECORD)
    if not os.path.isfile(path):
        raise SSLCacheError(f"{data_dir}: no {CACHE_RECORD}: the ssl_cached front-end reads features cached by "
                            "python -m ser.bin.cache_ssl (ser.sh runs it before stage 2); give the cache's data "
                            "dirs")
    with open(path) as f:
        return json.load(f)


def check_record(data_dir: str, conf: dict) -> dict:
    """The cache record of ``data_dir`` when it was computed with ``conf``'s settings; else SSLCacheError."""
    record = read_record(data_dir)
    wanted = cache_settings(conf, record)
    for field in SETTINGS:
        if record["settings"].get(field) != wanted[field]:
            what = "checkpoint content" if field == "checkpoint" else f"frontend_conf.{field}"
            raise SSLCacheError(f"{os.path.join(data_dir, CACHE_RECORD)}: a stale cache: its {what} is "
                                f"{record['settings'].get(field)!r}, the config's {wanted[field]!r}; recompute it "
                                "(python -m ser.bin.cache_ssl) or train with the settings it was made with")
    return record


def wav_scp_digest(data_dir: str) -> str:
    from ser.stamps import inputs_digest

    return inputs_digest([os.path.join(data_dir, "wav.scp")])
