"""Self-contained model archives: the files a trained run needs to classify audio, packed into one .tar.gz.

An archive holds one run (``model/``) or every run of an experiment (``model/seed<s>/fold<k>/``), each with the
files below, its model card ``model/model_card.json`` (ser.card) and ``model/MANIFEST.json`` with every file's
SHA-256. Unpacking refuses links, absolute paths and
``..``, and checks every file against the manifest, so an archive from someone else can be read safely: the
weights are loaded weights-only (ser.infer.read_weights), and nothing in it is executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

from ser.atomic import atomic_path
from ser.card import CARD_FILE, read_card
from ser.rundir import model_dirs

RUN_FILES = ("config.yaml", "run.json", "model.pth", "selection.json", "cmvn.ark", "fbank.conf", "utterance_norm.npz",
             CARD_FILE)
REQUIRED = ("config.yaml", "run.json", "model.pth")
ROOT = "model"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(model_path: str, archive: str) -> list[str]:
    """Pack a run or an experiment (see ser.rundir.model_dirs) into ``archive``; returns the runs packed."""
    runs = model_dirs(model_path)
    single = len(runs) == 1 and os.path.abspath(runs[0]) == os.path.abspath(model_path)
    manifest = {}
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for run in runs:
            inside = ROOT if single else os.path.join(ROOT, os.path.relpath(run, model_path))
            for name in REQUIRED:
                if not os.path.isfile(os.path.join(run, name)):
                    raise FileNotFoundError(f"{run}: no {name}; is training of this fold finished?")
            for name in RUN_FILES:
                path = os.path.join(run, name)
                if os.path.isfile(path):
                    tar.add(path, arcname=os.path.join(inside, name), recursive=False)
                    manifest[os.path.join(inside, name)] = _sha256(path)
        card_name = os.path.join(ROOT, CARD_FILE)
        if card_name not in manifest:  # the experiment's card (or a run's, built now where it has none)
            data = json.dumps(read_card(model_path), indent=1).encode()
            _add_bytes(tar, card_name, data)
            manifest[card_name] = hashlib.sha256(data).hexdigest()
        _add_bytes(tar, os.path.join(ROOT, "MANIFEST.json"),
                   json.dumps({"runs": len(runs), "sha256": manifest}, indent=1).encode())
    return runs


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def unpack(archive: str, destination: str) -> str:
    """Unpack ``archive`` into ``destination``; returns the model path inside it (a run or an experiment)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = os.path.normpath(member.name)
                if not (member.isfile() or member.isdir()) or os.path.isabs(name) or name.startswith(".."):
                    raise ValueError(f"{archive}: refusing member {member.name!r} (links, absolute paths and '..' "
                                     "are not part of a ser model archive)")
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{archive}: not a readable model archive ({e})") from None
    root = os.path.join(destination, ROOT)
    manifest_path = os.path.join(root, "MANIFEST.json")
    if not os.path.isfile(manifest_path):
        raise ValueError(f"{archive}: no {ROOT}/MANIFEST.json; not a ser model archive")
    with open(manifest_path) as f:
        manifest = json.load(f)["sha256"]
    for name, digest in manifest.items():
        path = os.path.join(destination, name)
        if not os.path.isfile(path) or _sha256(path) != digest:
            raise ValueError(f"{archive}: {name} is missing or differs from the manifest (a damaged archive)")
    return root


def read_archive_card(archive: str) -> dict:
    """The model card of an archive (checked against its manifest like every file of it)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ser-card-") as tmp:
        return read_card(unpack(archive, tmp))
