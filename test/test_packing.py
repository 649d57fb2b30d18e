"""Model archives (ser.packing): an archive is exactly its manifest; what the ensemble loads is what it names."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import tarfile

import pytest

from support import CLASSES, FAST_CONFIG, PYTHON, REPO, python_env, write_wav


@pytest.fixture(scope="module")
def experiment(feature_dirs, tmp_path_factory):
    """An experiment of two trained runs (seed0/fold1 and seed0/fold2, one epoch each: the first copied)."""
    from ser.config import resolve_config
    from ser.train import train

    root = tmp_path_factory.mktemp("packing")
    exp = root / "exp"
    run = exp / "seed0" / "fold1"
    fbank_conf = root / "fbank.conf"  # 20 mel bins, as the feature dirs have
    fbank_conf.write_text(open(os.path.join(REPO, "egs", "TEMPLATE", "conf", "fbank.conf")).read()
                          .replace("--num-mel-bins=80", "--num-mel-bins=20"))
    train(resolve_config({**FAST_CONFIG, "max_epoch": 1}), CLASSES, str(feature_dirs / "train"),
          str(feature_dirs / "valid"), str(feature_dirs / "train" / "cmvn.ark"), str(run),
          extra_files={"fbank.conf": str(fbank_conf)})
    shutil.copytree(run, exp / "seed0" / "fold2")
    return exp


def with_extra_member(archive, out, name, data: bytes):
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        dst.addfile(info, io.BytesIO(data))
    return out


def test_an_unlisted_file_is_refused_by_name_and_the_loaded_runs_are_the_manifests(experiment, tmp_path):
    from ser import EmotionRecognizer
    from ser.packing import pack, unpack

    archive = tmp_path / "exp.tar.gz"
    pack(str(experiment), str(archive))
    runs = unpack(str(archive), str(tmp_path / "out"))
    assert [os.path.relpath(r, tmp_path / "out") for r in runs] == ["model/seed0/fold1", "model/seed0/fold2"]
    # A third run that the packer did not write would have joined the ensemble.
    model = (experiment / "seed0" / "fold1" / "model.pth").read_bytes()
    extra = with_extra_member(archive, tmp_path / "extra.tar.gz", "model/seed0/fold3/model.pth", model)
    with pytest.raises(ValueError, match="extra.tar.gz: refusing 'model/seed0/fold3/model.pth': the manifest does "
                                         "not list it"):
        unpack(str(extra), str(tmp_path / "out2"))
    assert not (tmp_path / "out2" / "model").exists()  # refused before anything is written
    write_wav(str(tmp_path / "a.wav"), 16000, seconds=1.0)
    proc = subprocess.run([PYTHON, "-m", "ser.bin.classify", "--model", str(extra), str(tmp_path / "a.wav")],
                          capture_output=True, text=True, env=python_env())
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {extra}: refusing 'model/seed0/fold3")
    recognizer = EmotionRecognizer.from_dir(str(archive))
    assert len(recognizer.members) == 2 and recognizer.description.startswith("an ensemble of 2 models")


def test_a_python_tag_in_an_archived_config_is_one_line_naming_it(experiment, tmp_path):
    from ser.packing import pack

    run = tmp_path / "run"
    shutil.copytree(experiment / "seed0" / "fold1", run)
    config = run / "config.yaml"
    marker = tmp_path / "ran"
    config.write_text(f"encoder: !!python/object/apply:os.system ['touch {marker}']\n" + config.read_text())
    archive = tmp_path / "tagged.tar.gz"
    pack(str(run), str(archive))
    write_wav(str(tmp_path / "a.wav"), 16000, seconds=1.0)
    proc = subprocess.run([PYTHON, "-m", "ser.bin.classify", "--model", str(archive), str(tmp_path / "a.wav")],
                          capture_output=True, text=True, env=python_env())
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and not marker.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "model/config.yaml: not valid YAML: line 1, column 10: could not " \
        "determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'" in last


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")  # as a write on a full disk reports it: no file named


def test_a_full_disk_names_the_archive_and_the_output_and_leaves_no_partial_file(experiment, tmp_path, monkeypatch,
                                                                                   capsys):
    import ser.bin.classify
    from ser.cli import error_text
    from ser.packing import pack

    out = tmp_path / "out"
    out.mkdir()
    archive = out / "exp.tar.gz"
    monkeypatch.setattr(tarfile.TarFile, "addfile", no_space)
    with pytest.raises(OSError) as full:
        pack(str(experiment), str(archive))
    assert error_text(full.value) == f"No space left on device while writing {archive}"
    assert os.listdir(out) == []
    monkeypatch.undo()
    write_wav(str(tmp_path / "a.wav"), 16000, seconds=1.0)
    scores = out / "scores.csv"

    def write_then_fail(predictions, classes, fmt, stream):
        stream.write("file,")
        stream.flush()
        no_space()

    monkeypatch.setattr(ser.bin.classify, "write", write_then_fail)
    with pytest.raises(SystemExit):
        ser.bin.classify.main(["--model", str(experiment), "--output", str(scores), str(tmp_path / "a.wav")])
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: No space left on device while writing {scores}"
    assert os.listdir(out) == []
