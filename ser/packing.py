"""Self-contained model archives: the files a trained run needs to classify audio, packed into one .tar.gz.

An archive holds one run (``model/``) or every run of an experiment (``model/seed<s>/fold<k>/``), each with the
files below, its model card ``model/model_card.json`` (ser.card) and ``model/MANIFEST.json`` with every file's
SHA-256. Unpacking refuses links, absolute paths and ``..``; an archive is exactly its manifest: a file it does
not list is refused (naming it), every file it lists is checked against its digest, and the runs loaded are those
it names. So an archive from someone else can be read safely: the weights are loaded weights-only
(ser.infer.read_weights), and nothing in it is executed.
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
             "stack_classic.npz", CARD_FILE)
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


MANIFEST = os.path.join(ROOT, "MANIFEST.json")


def _read_manifest(tar: tarfile.TarFile, archive: str) -> dict:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise ValueError(f"{archive}: no {MANIFEST}; not a ser model archive") from None
    try:
        manifest = json.loads(tar.extractfile(member).read())
        digests, runs = manifest["sha256"], manifest["runs"]
        if not (isinstance(digests, dict) and isinstance(runs, int)):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{archive}: {MANIFEST} is not a ser model manifest") from None
    for name in digests:
        if os.path.normpath(name) != name or not name.startswith(ROOT + "/"):
            raise ValueError(f"{archive}: {MANIFEST} lists {name!r}, not a file under {ROOT}/")
    models = sum(os.path.basename(name) == "model.pth" for name in digests)
    if models != runs or not runs:
        raise ValueError(f"{archive}: {MANIFEST} counts {runs} run(s) but lists {models} model.pth")
    return digests


def unpack(archive: str, destination: str) -> list[str]:
    """Unpack ``archive`` into ``destination``; returns the runs its manifest names (dirs holding model.pth)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            digests = _read_manifest(tar, archive)
            for member in tar.getmembers():
                name = os.path.normpath(member.name)
                if not (member.isfile() or member.isdir()) or os.path.isabs(name) or name.startswith(".."):
                    raise ValueError(f"{archive}: refusing member {member.name!r} (links, absolute paths and '..' "
                                     "are not part of a ser model archive)")
                if member.isfile() and name != MANIFEST and name not in digests:
                    raise ValueError(f"{archive}: refusing {member.name!r}: the manifest does not list it (an "
                                     "archive holds exactly the files of its manifest)")
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{archive}: not a readable model archive ({e})") from None
    for name, digest in digests.items():
        path = os.path.join(destination, name)
        if not os.path.isfile(path) or _sha256(path) != digest:
            raise ValueError(f"{archive}: {name} is missing or differs from the manifest (a damaged archive)")
    return sorted(os.path.join(destination, os.path.dirname(name)) for name in digests
                  if os.path.basename(name) == "model.pth")


def read_archive_card(archive: str) -> dict:
    """The model card of an archive (checked against its manifest like every file of it)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ser-card-") as tmp:
        unpack(archive, tmp)
        return read_card(os.path.join(tmp, ROOT))
