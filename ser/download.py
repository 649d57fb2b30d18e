"""Corpus downloads: fetch a file (resumable, checksummed) and unpack an archive (safely, once).

``fetch`` downloads ``url`` into ``dest_dir/name.part``, resuming an interrupted ``.part`` with an HTTP Range request,
verifies its sha256 when one is given and only then renames it to ``dest_dir/name``: a file under its final name is
complete and verified, and one that is already there is not fetched again. A local path or ``file://`` URL is copied
(hard-linked where it can be) with the same checks, for users who already have the file.

``extract`` unpacks a zip or tar(.gz/.bz2/.xz) archive into a hidden staging dir inside ``dest_dir``, refusing any
entry that would land outside it (``..``, absolute paths, links pointing outside, devices), then moves the entries
into place and writes ``dest_dir/.<archive>.extracted``; a re-run with that mark does nothing.

Errors are :class:`DownloadError` (one line naming the URL or file) or ``OSError`` naming the file (a full disk).
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import hashlib
import http.client
import json
import logging
import lzma
import os
import posixpath
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from typing import Iterator

from ser.atomic import write_json

log = logging.getLogger("ser.download")

CHUNK = 1 << 20
PROGRESS_SECONDS = 5.0  # progress lines at most this often
TIMEOUT_SECONDS = 60.0  # a connection silent this long is an error
RETRIES = 3  # a connection lost midway is resumed this many times before giving up
RETRY_WAIT_SECONDS = 2.0  # times the try number
USER_AGENT = "ser-download/1"


class DownloadError(Exception):
    """A download or extraction failed; the message is one line naming the URL or file."""


def _local_path(url: str) -> str | None:
    """The file a local path or file:// URL names; None for a network URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    return url  # no scheme (or a Windows drive letter): a path


def url_file_name(url: str) -> str:
    """The file name at the end of a URL's path (or of a local path)."""
    local = _local_path(url)
    name = os.path.basename(local) if local is not None else \
        posixpath.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name or name in (".", ".."):
        raise DownloadError(f"{url}: no file name at the end of the URL; give one")
    return name


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # not reached


class _Progress:
    """Logs ``name: done of total`` at most every PROGRESS_SECONDS."""

    def __init__(self, name: str, done: int, total: int | None):
        self.name, self.done, self.total = name, done, total
        self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            if self.total:
                log.info("%s: %s of %s (%.0f%%)", self.name, _size_text(self.done), _size_text(self.total),
                         100.0 * self.done / self.total)
            else:
                log.info("%s: %s", self.name, _size_text(self.done))


def _write_error(error: OSError, path: str, source: str) -> OSError:
    """An error writing ``path`` (a full disk), naming the file and where its content came from."""
    return OSError(error.errno, f"{path}: {error.strerror or error} (writing {source})", path)


def _verify_and_place(part: str, dest: str, digest: str, sha256: str | None, source: str) -> str:
    """Rename a complete ``part`` to ``dest`` when its digest is the expected one; else move it aside and fail."""
    name = os.path.basename(dest)
    if sha256 is not None and digest != sha256.lower():
        bad = dest + ".bad"
        os.replace(part, bad)
        raise DownloadError(f"{name}: sha256 mismatch: expected {sha256.lower()}, got {digest} "
                            f"(from {source}; kept as {bad})")
    if sha256 is None:
        log.info("%s: sha256 %s (not checked: none given)", name, digest)
    os.replace(part, dest)
    return dest


@contextmanager
def _dir_lock(directory: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (two runs never write the same .part or staging dir); a file system
    without locks is used without."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: waiting for another process writing there", directory)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def fetch(url: str, dest_dir: str, sha256: str | None = None, name: str | None = None) -> str:
    """Download ``url`` to ``dest_dir/name`` (name: the URL's file name by default) and return that path.

    An existing ``dest_dir/name`` that matches ``sha256`` (or any, when none is given) is kept as it is; one that
    does not is moved aside to ``name.bad`` and fetched again. ``url`` may be a local path or a ``file://`` URL."""
    name = name or url_file_name(url)
    with _dir_lock(dest_dir):
        return _fetch(url, dest_dir, sha256, name)


def _fetch(url: str, dest_dir: str, sha256: str | None, name: str) -> str:
    dest = os.path.join(dest_dir, name)
    part = dest + ".part"
    if os.path.isfile(dest):
        if sha256 is None:
            log.info("%s is already there", dest)
            return dest
        digest = sha256_file(dest)
        if digest == sha256.lower():
            log.info("%s is already there (sha256 checked)", dest)
            return dest
        log.warning("%s has sha256 %s, not %s; moved aside to %s.bad and fetched again", dest, digest,
                    sha256.lower(), dest)
        os.replace(dest, dest + ".bad")
    local = _local_path(url)
    if local is not None:
        return _copy_local(local, part, dest, sha256)
    for attempt in range(RETRIES + 1):
        try:
            digest = _download(url, part)
            break
        except _Interrupted as lost:
            if attempt == RETRIES:
                raise DownloadError(f"{url}: {lost} (gave up after {RETRIES} retries; run again to resume "
                                    f"from {part})") from None
            wait = RETRY_WAIT_SECONDS * (attempt + 1)
            log.warning("%s: %s; resuming in %.0f s", url, lost, wait)
            time.sleep(wait)
    return _verify_and_place(part, dest, digest, sha256, url)


def _copy_local(src: str, part: str, dest: str, sha256: str | None) -> str:
    if not os.path.isfile(src):
        raise DownloadError(f"{src}: no such file")
    if os.path.exists(part):
        os.unlink(part)
    try:
        os.link(src, part)  # no second copy of a large archive where the file system allows it
    except OSError:
        progress = _Progress(os.path.basename(dest), 0, os.path.getsize(src))
        with open(src, "rb") as fin, open(part, "wb") as fout:
            while chunk := fin.read(CHUNK):
                try:
                    fout.write(chunk)
                except OSError as error:
                    raise _write_error(error, part, src) from None
                progress.add(len(chunk))
    return _verify_and_place(part, dest, sha256_file(part), sha256, src)


class _Interrupted(Exception):
    """The connection was lost midway; the .part holds what arrived and a retry resumes from there."""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header: ``bytes 100-199/200`` or ``bytes */200``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first = span.partition("-")[0]
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def _download(url: str, part: str) -> str:
    """Fill ``part`` with the whole of ``url`` (resuming what it holds) and return its sha256."""
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the .part is complete, or longer than the file
            total = _content_range(error.headers.get("Content-Range"))[1]
            error.close()
            if total is None or total == have:
                log.info("%s: %s already complete", url, part)
                return sha256_file(part)
            log.warning("%s: %s is longer than the file (%d > %d bytes); fetching it again", url, part, have, total)
            os.unlink(part)
            return _download(url, part)
        error.close()
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)):
            raise _Interrupted(f"connection lost ({type(reason).__name__})") from None
        raise DownloadError(f"{url}: {getattr(reason, 'strerror', None) or reason}") from None
    except (TimeoutError, socket.timeout):
        raise DownloadError(f"{url}: timed out after {TIMEOUT_SECONDS:.0f} s") from None
    except (http.client.HTTPException, ConnectionError) as error:
        raise _Interrupted(f"connection lost ({type(error).__name__})") from None
    with response:
        digest = hashlib.sha256()
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206 and have:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                raise DownloadError(f"{url}: asked for bytes from {have}, the server sent from {first}")
            with open(part, "rb") as f:  # the digest covers the bytes already there
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            mode = "ab"
            log.info("%s: resuming at %s", url, _size_text(have))
        else:
            if have:
                log.info("%s: the server does not resume downloads; fetching it from the start", url)
            have, mode = 0, "wb"
            total = length
        expected = have + length if length is not None else total
        progress = _Progress(os.path.basename(part).removesuffix(".part"), have, expected)
        received = have
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (TimeoutError, socket.timeout):
                    raise _Interrupted(f"timed out after {_size_text(received)}") from None
                except (http.client.HTTPException, ConnectionError, OSError) as error:
                    raise _Interrupted(f"connection lost after {_size_text(received)} "
                                       f"({type(error).__name__})") from None
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as error:
                    raise _write_error(error, part, url) from None
                digest.update(chunk)
                received += len(chunk)
                progress.add(len(chunk))
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as error:
                raise _write_error(error, part, url) from None
        if expected is not None and received < expected:
            raise _Interrupted(f"connection lost after {_size_text(received)} of {_size_text(expected)}")
        if expected is not None and received > expected:
            raise DownloadError(f"{url}: received {received} bytes, more than the {expected} announced")
        return digest.hexdigest()


# --- extraction -------------------------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: str) -> bool:
    """A zip or tar archive, by its name (``extract`` checks the content)."""
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def done_marker(archive: str, dest_dir: str) -> str:
    return os.path.join(dest_dir, f".{os.path.basename(archive)}.extracted")


def is_extracted(archive: str, dest_dir: str, sha256: str | None = None) -> bool:
    """Whether ``dest_dir`` holds a complete extraction of ``archive`` (of the one with ``sha256``, when given;
    else of one of the archive's size, where it is still there)."""
    try:
        with open(done_marker(archive, dest_dir), encoding="utf-8") as f:
            mark = json.load(f)
    except (OSError, ValueError):
        return False
    if sha256 is not None:
        return mark.get("sha256") == sha256.lower()
    if os.path.isfile(archive):
        return mark.get("size") == os.path.getsize(archive)
    return True


_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _check_name(archive: str, name: str, root: str) -> str:
    """The path an entry called ``name`` lands at under ``root``; an error for one that would land outside."""
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: refused: entry {name!r} has an absolute path")
    target = os.path.realpath(os.path.join(root, name))  # through the links extracted so far
    if not _inside(target, root) or ".." in name.replace("\\", "/").split("/"):
        raise DownloadError(f"{archive}: refused: entry {name!r} points outside the extraction dir")
    return target


def _check_tar_member(archive: str, member: tarfile.TarInfo, root: str) -> None:
    target = _check_name(archive, member.name, root)
    if member.issym():
        if os.path.isabs(member.linkname):
            raise DownloadError(f"{archive}: refused: link {member.name!r} points to the absolute path "
                                f"{member.linkname!r}")
        if not _inside(os.path.realpath(os.path.join(os.path.dirname(target), member.linkname)), root):
            raise DownloadError(f"{archive}: refused: link {member.name!r} -> {member.linkname!r} points outside "
                                "the extraction dir")
    elif member.islnk():
        try:
            _check_name(archive, member.linkname, root)
        except DownloadError:
            raise DownloadError(f"{archive}: refused: hard link {member.name!r} -> {member.linkname!r} points outside "
                                "the extraction dir") from None
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"{archive}: refused: entry {member.name!r} is a device or fifo")


def _extract_zip(archive: str, staging: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # every entry checked before any is written
            _check_name(archive, info.filename, staging)  # a link in a zip is written as a file naming its target
        for info in infos:
            zf.extract(info, staging)


def _extract_tar(archive: str, staging: str) -> None:
    # One pass over the (compressed) stream: each member is checked, then extracted.
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            _check_tar_member(archive, member, staging)
            if member.isdir():
                os.makedirs(os.path.join(staging, member.name), exist_ok=True)  # modes of dirs not kept
                continue
            tf.extract(member, staging, filter="data")


def _merge(src: str, dst: str) -> None:
    """Move the tree ``src`` into the dir ``dst``, entry by entry (dirs merged, files replaced)."""
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isdir(s) and not os.path.islink(s) and os.path.isdir(d) and not os.path.islink(d):
            _merge(s, d)
        else:
            if os.path.isdir(d) and not os.path.islink(d):
                raise DownloadError(f"{d}: a dir is in the way of the archive's file {name}")
            os.replace(s, d)


def extract(archive: str, dest_dir: str, sha256: str | None = None) -> str:
    """Unpack a zip or tar(.gz/.bz2/.xz) ``archive`` into ``dest_dir`` (merged with what is there) and return
    ``dest_dir``; nothing happens when ``dest_dir`` has the mark of this archive's extraction."""
    with _dir_lock(dest_dir):
        return _extract(archive, dest_dir, sha256)


def _extract(archive: str, dest_dir: str, sha256: str | None) -> str:
    if is_extracted(archive, dest_dir, sha256):
        log.info("%s: already extracted into %s", archive, dest_dir)
        return dest_dir
    if not os.path.isfile(archive):
        raise DownloadError(f"{archive}: no such file")
    os.makedirs(dest_dir, exist_ok=True)
    root = os.path.realpath(dest_dir)
    marker = done_marker(archive, dest_dir)
    if os.path.exists(marker):
        os.unlink(marker)
    staging = os.path.join(root, f".{os.path.basename(archive)}.extracting")
    shutil.rmtree(staging, ignore_errors=True)  # an interrupted run's
    os.makedirs(staging)
    log.info("extracting %s into %s", archive, dest_dir)
    try:
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, staging)
            elif tarfile.is_tarfile(archive):
                _extract_tar(archive, staging)
            else:
                raise DownloadError(f"{archive}: not a zip or tar archive")
        except tarfile.FilterError as error:  # tarfile's own check, which follows links already extracted
            raise DownloadError(f"{archive}: refused: {error}") from None
        except _DAMAGED as error:
            raise DownloadError(f"{archive}: damaged archive ({error})") from None
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise OSError(error.errno, f"{dest_dir}: No space left on device (extracting {archive})",
                              dest_dir) from None
            if error.filename is None:  # a decompressor's complaint (bz2: "Invalid data stream")
                raise DownloadError(f"{archive}: damaged archive ({error})") from None
            raise
        _merge(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(marker, {"archive": os.path.basename(archive), "size": os.path.getsize(archive),
                        "sha256": sha256.lower() if sha256 else None})
    return dest_dir


