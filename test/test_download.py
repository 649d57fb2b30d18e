"""ser.download and ser.bin.download against a local HTTP server (never the internet)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest

from ser import download
from ser.bin import download as download_cli
from ser.download import DownloadError, extract, fetch

from support import Server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server_factory(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 5.0)
    servers = []

    def make(mode: str = "range") -> Server:
        s = Server(mode)
        s.thread.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


@pytest.fixture
def server(server_factory):
    return server_factory("range")


PAYLOAD = os.urandom(300_000)


# --- fetch -------------------------------------------------------------------------------------------------------

def test_fetch_fresh_download_checksum(server, tmp_path):
    server.files["/d/corpus.bin"] = PAYLOAD
    path = fetch(server.base + "/d/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    assert path == str(tmp_path / "corpus.bin")
    assert open(path, "rb").read() == PAYLOAD
    assert not os.path.exists(path + ".part")
    assert server.sent() == len(PAYLOAD)


def test_fetch_resumes_partial_part(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    (tmp_path / "corpus.bin.part").write_bytes(PAYLOAD[:123_456])
    path = fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    assert open(path, "rb").read() == PAYLOAD
    assert server.requests == [("/corpus.bin", "bytes=123456-", len(PAYLOAD) - 123_456)]  # only the rest


def test_fetch_complete_part_416(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    (tmp_path / "corpus.bin.part").write_bytes(PAYLOAD)
    path = fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    assert open(path, "rb").read() == PAYLOAD
    assert [r[2] for r in server.requests] == [0]


def test_fetch_server_ignoring_range_restarts(server_factory, tmp_path):
    server = server_factory("ignore-range")
    server.files["/corpus.bin"] = PAYLOAD
    (tmp_path / "corpus.bin.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    path = fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    assert open(path, "rb").read() == PAYLOAD
    assert server.sent() == len(PAYLOAD)


def test_fetch_resumes_after_dropped_connection(server_factory, tmp_path):
    server = server_factory("drop")
    server.files["/corpus.bin"] = PAYLOAD
    path = fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    assert open(path, "rb").read() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert [(r[1], r[2]) for r in server.requests] == [(None, half), (f"bytes={half}-", len(PAYLOAD) - half)]


def test_fetch_gives_up_keeping_part(server_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "RETRIES", 0)
    server = server_factory("drop")
    server.files["/corpus.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match=r"/corpus.bin: connection lost .*run again to resume"):
        fetch(server.base + "/corpus.bin", str(tmp_path))
    assert not (tmp_path / "corpus.bin").exists()
    assert (tmp_path / "corpus.bin.part").stat().st_size == len(PAYLOAD) // 2


def test_fetch_checksum_mismatch(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch(server.base + "/corpus.bin", str(tmp_path), sha256=wrong)
    message = str(info.value)
    assert "corpus.bin" in message and wrong in message and sha(PAYLOAD) in message and "\n" not in message
    assert sorted(os.listdir(tmp_path)) == ["corpus.bin.bad"]  # nothing under the final name, no .part


def test_fetch_rerun_does_nothing(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    fetch(server.base + "/corpus.bin", str(tmp_path))
    assert len(server.requests) == 1


def test_fetch_concurrent_runs_fetch_once(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    results, errors = [], []

    def run():
        try:
            results.append(fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD)))
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 3 and len(server.requests) == 1
    assert open(results[0], "rb").read() == PAYLOAD


def test_fetch_replaces_a_bad_existing_file(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    (tmp_path / "corpus.bin").write_bytes(b"stale")
    fetch(server.base + "/corpus.bin", str(tmp_path), sha256=sha(PAYLOAD))
    assert (tmp_path / "corpus.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "corpus.bin.bad").read_bytes() == b"stale"


def test_fetch_errors_name_the_url(server, tmp_path):
    url = server.base + "/missing.zip"
    with pytest.raises(DownloadError, match=r"^" + url + ": HTTP 404"):
        fetch(url, str(tmp_path))
    server.httpd.shutdown()
    server.httpd.server_close()
    with pytest.raises(DownloadError, match=r"^" + server.base + "/a.zip: .*[Rr]efused"):
        fetch(server.base + "/a.zip", str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_fetch_full_disk_names_the_file(server, tmp_path):
    server.files["/corpus.bin"] = PAYLOAD
    os.symlink("/dev/full", tmp_path / "corpus.bin.part")  # every write: No space left on device
    with pytest.raises(OSError) as info:
        fetch(server.base + "/corpus.bin", str(tmp_path))
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path / "corpus.bin.part") in info.value.strerror and "/corpus.bin" in info.value.strerror
    assert not (tmp_path / "corpus.bin").exists()


def test_fetch_progress(server, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(download, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(download, "CHUNK", 100_000)
    server.files["/corpus.bin"] = PAYLOAD
    with caplog.at_level("INFO", logger="ser.download"):
        fetch(server.base + "/corpus.bin", str(tmp_path))
    assert "corpus.bin: 195.3 KiB of 293.0 KiB (67%)" in caplog.text


def test_fetch_local_path_and_file_url(tmp_path):
    src = tmp_path / "have" / "corpus.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    a = fetch(str(src), str(tmp_path / "a"), sha256=sha(PAYLOAD))
    b = fetch(src.as_uri(), str(tmp_path / "b"), sha256=sha(PAYLOAD), name="renamed.bin")
    assert open(a, "rb").read() == PAYLOAD and b.endswith("renamed.bin") and open(b, "rb").read() == PAYLOAD
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(str(src), str(tmp_path / "c"), sha256="1" * 64)
    assert not (tmp_path / "c" / "corpus.bin").exists() and src.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="nowhere.bin: no such file"):
        fetch(str(tmp_path / "nowhere.bin"), str(tmp_path / "d"))


# --- extract -----------------------------------------------------------------------------------------------------

TREE = {"Corpus/Actor_01/a.wav": b"RIFF-a", "Corpus/Actor_02/b.wav": b"RIFF-b", "Corpus/README.txt": b"hello"}


def make_zip(path, entries: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return str(path)


def make_tar(path, entries: dict[str, bytes], mode: str = "w:gz", links: dict[str, tuple[bytes, str]] = ()) -> str:
    with tarfile.open(path, mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in dict(links).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return str(path)


def read_tree(root) -> dict[str, bytes]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            rel = os.path.relpath(os.path.join(d, n), root)
            if not rel.startswith("."):
                out[rel] = open(os.path.join(d, n), "rb").read()
    return out


def test_extract_zip_and_rerun(tmp_path):
    archive = make_zip(tmp_path / "c.zip", TREE)
    dest = tmp_path / "out"
    assert extract(archive, str(dest)) == str(dest)
    assert read_tree(dest) == TREE
    assert sorted(os.listdir(dest)) == [".c.zip.extracted", "Corpus"]  # no staging left
    (dest / "Corpus" / "README.txt").write_bytes(b"edited")
    extract(archive, str(dest))  # the done mark: nothing happens
    assert (dest / "Corpus" / "README.txt").read_bytes() == b"edited"


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tar.bz2", "w:bz2"),
                                         (".tar.xz", "w:xz")])
def test_extract_tar(tmp_path, suffix, mode):
    archive = make_tar(tmp_path / ("c" + suffix), TREE, mode,
                       links={"Corpus/link.wav": (tarfile.SYMTYPE, "Actor_01/a.wav")})
    dest = tmp_path / "out"
    extract(archive, str(dest))
    assert read_tree(dest) == {**TREE, "Corpus/link.wav": b"RIFF-a"}


def test_extract_merges_archives(tmp_path):
    a = make_zip(tmp_path / "a.zip", {"Corpus/Actor_01/a.wav": b"a"})
    b = make_tar(tmp_path / "b.tgz", {"Corpus/Actor_02/b.wav": b"b"})
    extract(a, str(tmp_path / "out"))
    extract(b, str(tmp_path / "out"))
    assert read_tree(tmp_path / "out") == {"Corpus/Actor_01/a.wav": b"a", "Corpus/Actor_02/b.wav": b"b"}


@pytest.mark.parametrize("case", ["zip-dotdot", "zip-absolute", "tar-dotdot", "tar-absolute", "tar-symlink-out",
                                  "tar-symlink-absolute", "tar-hardlink-out", "tar-symlink-chain"])
def test_extract_refuses_traversal(tmp_path, case):
    ok = {"Corpus/a.wav": b"a"}
    if case == "zip-dotdot":
        archive = make_zip(tmp_path / "x.zip", {**ok, "Corpus/../../evil.txt": b"!"})
    elif case == "zip-absolute":
        archive = make_zip(tmp_path / "x.zip", {**ok, "/tmp/evil.txt": b"!"})
    elif case == "tar-dotdot":
        archive = make_tar(tmp_path / "x.tgz", {**ok, "../evil.txt": b"!"})
    elif case == "tar-absolute":
        archive = make_tar(tmp_path / "x.tgz", {**ok, "/tmp/evil.txt": b"!"})
    elif case == "tar-symlink-out":
        archive = make_tar(tmp_path / "x.tgz", ok, links={"Corpus/up": (tarfile.SYMTYPE, "../../..")})
    elif case == "tar-symlink-absolute":
        archive = make_tar(tmp_path / "x.tgz", ok, links={"Corpus/etc": (tarfile.SYMTYPE, "/etc")})
    elif case == "tar-hardlink-out":
        archive = make_tar(tmp_path / "x.tgz", ok, links={"Corpus/h": (tarfile.LNKTYPE, "../outside.txt")})
    else:  # each link stays inside by itself; through the first, the second leaves
        archive = make_tar(tmp_path / "x.tgz", ok, links={"Corpus/d/l": (tarfile.SYMTYPE, ".."),
                                                          "Corpus/d/l/m": (tarfile.SYMTYPE, "../..")})
    dest = tmp_path / "out" / "dest"
    with pytest.raises(DownloadError, match=r"x\.(zip|tgz): refused"):
        extract(archive, str(dest))
    assert os.listdir(dest) == []  # nothing moved into place, no mark, no staging
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_extract_damaged_archive(tmp_path):
    archive = tmp_path / "c.tar.gz"
    archive.write_bytes(open(make_tar(tmp_path / "ok.tar.gz", TREE), "rb").read()[:100])
    with pytest.raises(DownloadError, match="c.tar.gz: "):
        extract(str(archive), str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == []


# --- the command -------------------------------------------------------------------------------------------------

def corpus_module(tmp_path, downloads: str | None, extra: str = "") -> str:
    path = tmp_path / "mycorpus.py"
    text = 'OBTAIN = "from the authors, under a licence (https://example.invalid/licence)"\n' + extra
    if downloads is not None:
        text += f"DOWNLOADS = {downloads}\n"
    path.write_text(text)
    return str(path)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        download_cli.main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_corpus_with_mirror(server, tmp_path, capsys):
    speech = make_zip(tmp_path / "speech.zip", {"Actor_01/a.wav": b"a"})
    song = make_tar(tmp_path / "song.tar.gz", {"Actor_01/s.wav": b"s"})
    data = {name: open(p, "rb").read() for name, p in (("speech.zip", speech), ("song.tar.gz", song))}
    server.files.update({"/mirror/speech.zip": data["speech.zip"], "/mirror/song.tar.gz": data["song.tar.gz"],
                         "/mirror/labels.csv": b"a,ang\n"})
    downloads = repr([
        {"url": "https://example.invalid/records/1/files/speech.zip?download=1", "sha256": sha(data["speech.zip"]),
         "name": "speech.zip"},
        {"url": "https://example.invalid/other/song.tar.gz", "sha256": sha(data["song.tar.gz"]),
         "name": "song.tar.gz"},
        {"url": "https://example.invalid/labels.csv", "sha256": None, "name": "labels.csv"}])
    module = corpus_module(tmp_path, downloads)
    dl = tmp_path / "downloads"
    argv = ["--corpus", module, "--download-dir", str(dl), "--url-base", server.base + "/mirror/"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert out == f"{dl / 'mycorpus'}\n"
    assert read_tree(dl / "mycorpus") == {"Actor_01/a.wav": b"a", "Actor_01/s.wav": b"s", "labels.csv": b"a,ang\n"}
    assert len(server.requests) == 3
    os.unlink(dl / "speech.zip")  # unpacked archives may be deleted: a re-run fetches nothing
    code, out2, _ = run_cli(argv, capsys)
    assert code == 0 and out2 == out and len(server.requests) == 3


def test_cli_registered_corpus_and_root(server, tmp_path, capsys, monkeypatch):
    archive = make_tar(tmp_path / "full.tar.gz", {"Full_release/Session1/x.txt": b"x"})
    server.files["/f/full.tar.gz"] = open(archive, "rb").read()
    corpus_module(tmp_path, repr([{"url": server.base + "/f/full.tar.gz", "sha256": None,
                                     "name": "full.tar.gz"}]), extra='DOWNLOAD_ROOT = "Full_release"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(download_cli.CORPORA, "madeup", "mycorpus")
    monkeypatch.delitem(sys.modules, "mycorpus", raising=False)
    code, out, err = run_cli(["--corpus", "madeup", "--download-dir", str(tmp_path / "dl")], capsys)
    assert code == 0, err
    assert out == f"{tmp_path / 'dl' / 'madeup' / 'Full_release'}\n"
    assert (tmp_path / "dl" / "madeup" / "Full_release" / "Session1" / "x.txt").read_bytes() == b"x"
    assert "sha256" in err  # the digest of a file without one is shown, to be pinned


def test_cli_local_mirror_dir(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = open(make_zip(mirror / "speech.zip", {"Actor_01/a.wav": b"a"}), "rb").read()
    module = corpus_module(tmp_path, repr([{"url": "https://example.invalid/x/speech.zip", "sha256": sha(data),
                                            "name": "speech.zip"}]))
    code, out, err = run_cli(["--corpus", module, "--download-dir", str(tmp_path / "dl"), "--url-base", str(mirror)],
                             capsys)
    assert code == 0, err
    assert (tmp_path / "dl" / "mycorpus" / "Actor_01" / "a.wav").read_bytes() == b"a"


def test_cli_no_downloads(tmp_path, capsys):
    module = corpus_module(tmp_path, None)
    code, out, err = run_cli(["--corpus", module, "--download-dir", str(tmp_path / "dl")], capsys)
    assert code == 2 and out == ""
    assert err.strip() == ("error: mycorpus cannot be downloaded by ser: from the authors, under a licence "
                           "(https://example.invalid/licence)")
    assert not (tmp_path / "dl").exists()


def test_cli_url_and_checksum_error(server, tmp_path, capsys):
    archive = make_zip(tmp_path / "mine.zip", {"x/a.wav": b"a"})
    data = open(archive, "rb").read()
    server.files["/mine.zip"] = data
    dl = tmp_path / "dl"
    code, out, err = run_cli(["--url", server.base + "/mine.zip", "--sha256", "f" * 64, "--download-dir", str(dl)],
                             capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "mine.zip: sha256 mismatch" in err and sha(data) in err
    code, out, err = run_cli(["--url", server.base + "/mine.zip", "--sha256", sha(data), "--download-dir", str(dl)],
                             capsys)
    assert code == 0 and out == f"{dl / 'mine'}\n" and (dl / "mine" / "x" / "a.wav").read_bytes() == b"a"
    # a licensed corpus's archive the user has, for a corpus without DOWNLOADS
    module = corpus_module(tmp_path, None)
    code, out, err = run_cli(["--corpus", module, "--url", archive, "--download-dir", str(dl)], capsys)
    assert code == 0 and out == f"{dl / 'mycorpus'}\n" and (dl / "mycorpus" / "x" / "a.wav").exists()


def test_cli_as_a_command(tmp_path):
    """python -m ser.bin.download: the one line of stdout, errors as one line with status 1."""
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    archive = make_zip(tmp_path / "mine.zip", {"x/a.wav": b"a"})
    run = subprocess.run([sys.executable, "-m", "ser.bin.download", "--url", archive, "--download-dir",
                          str(tmp_path / "dl")], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and run.stdout == f"{tmp_path / 'dl' / 'mine'}\n"
    run = subprocess.run([sys.executable, "-m", "ser.bin.download", "--url", str(tmp_path / "none.zip"),
                          "--download-dir", str(tmp_path / "dl")], capture_output=True, text=True, env=env)
    assert run.returncode == 1 and run.stderr == f"error: {tmp_path / 'none.zip'}: no such file\n"
