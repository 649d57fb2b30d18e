"""Download a corpus (or one file) and unpack it; print the corpus dir to use.

python -m ser.bin.download --corpus NAME --download-dir DIR [--url-base URL]
python -m ser.bin.download [--corpus NAME] --download-dir DIR --url URL [--sha256 HEX]

--corpus: a name of ser.corpora.CORPORA or the path of a corpus module file. Every entry of the module's DOWNLOADS
({"url", "sha256", "name"}) is fetched into DIR (resumed where an earlier run stopped, checked against its sha256)
and unpacked into DIR/<corpus> (an archive) or fetched into DIR/<corpus> (any other file). The one line on
stdout is the corpus dir: DIR/<corpus>, or DIR/<corpus>/<DOWNLOAD_ROOT> where the module names the folder its
archives unpack into. A re-run does nothing for what is already there. A corpus without DOWNLOADS (obtained under
a licence) exits with status 2 and says where to obtain it (the module's OBTAIN).

--url-base: a mirror; it replaces every URL up to its file name (http://mirror/ser, or a local dir).
--url URL [--sha256 HEX]: one file of your choosing (also a local path or file:// URL) instead of the corpus's
DOWNLOADS, e.g. a licensed corpus's archive you have: unpacked into DIR/<corpus>, or DIR/<archive name without
its suffix> without --corpus (a file that is no archive: fetched into DIR, its path printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import urllib.parse

from ser.cli import die, setup_logging
from ser.corpora import CORPORA, corpus_module
from ser.download import ARCHIVE_SUFFIXES, DownloadError, extract, fetch, is_archive, is_extracted, url_file_name

log = logging.getLogger("ser.bin.download")

NO_DOWNLOAD_STATUS = 2


def mirrored(url: str, url_base: str | None) -> str:
    """``url`` with everything up to its file name replaced by ``url_base`` (a URL or a local dir)."""
    if not url_base:
        return url
    name = url_file_name(url)
    if urllib.parse.urlparse(url_base).scheme in ("http", "https", "ftp", "file"):
        return url_base.rstrip("/") + "/" + urllib.parse.quote(name)
    return os.path.join(url_base, name)


def archive_stem(name: str) -> str:
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def obtain(entries: list[dict], download_dir: str, corpus_dir: str, url_base: str | None = None) -> None:
    """Fetch every archive into ``download_dir`` and unpack it into ``corpus_dir``; fetch other files into
    ``corpus_dir``."""
    for entry in entries:
        url = mirrored(entry["url"], url_base)
        name = entry.get("name") or url_file_name(entry["url"])
        sha256 = entry.get("sha256")
        path = os.path.join(download_dir, name)
        if is_archive(name):
            if is_extracted(path, corpus_dir, sha256):  # even where the archive was deleted after unpacking
                log.info("%s: already unpacked into %s", name, corpus_dir)
                continue
            extract(fetch(url, download_dir, sha256=sha256, name=name), corpus_dir, sha256=sha256)
        else:
            fetch(url, corpus_dir, sha256=sha256, name=name)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="a corpus name (" + ", ".join(sorted(CORPORA)) + ") or a corpus module file")
    p.add_argument("--download-dir", required=True, help="where the files are fetched and unpacked")
    p.add_argument("--url-base", default=None, help="a mirror: replaces each URL up to its file name")
    p.add_argument("--url", default=None, help="one file to fetch instead of the corpus's DOWNLOADS "
                                               "(a URL, file:// URL or local path)")
    p.add_argument("--sha256", default=None, help="the sha256 of --url's file (checked; without it, printed)")
    p.add_argument("--name", default=None, help="the file name to store --url's file under (default: the URL's)")
    args = p.parse_args(argv)
    if not args.corpus and not args.url:
        p.error("give --corpus or --url (or both)")
    if args.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        p.error(f"--sha256 {args.sha256!r} is not 64 hex digits")
    if (args.sha256 or args.name) and not args.url:
        p.error("--sha256 and --name go with --url")
    setup_logging()
    try:
        module = root = None
        if args.corpus:
            module = corpus_module(args.corpus)
            name = getattr(module, "CORPUS", None) or os.path.splitext(os.path.basename(args.corpus))[0]
            root = getattr(module, "DOWNLOAD_ROOT", None)
        if args.url:
            file_name = args.name or url_file_name(args.url)
            entries = [{"url": args.url, "sha256": args.sha256, "name": file_name}]
            if not args.corpus:
                if not is_archive(file_name):  # one plain file: fetched into DIR, its path printed
                    print(fetch(args.url, args.download_dir, sha256=args.sha256, name=file_name))
                    return
                name = archive_stem(file_name)
        else:
            entries = getattr(module, "DOWNLOADS", None)
            if not entries:
                obtain_text = getattr(module, "OBTAIN", "see the corpus module's documentation")
                print(f"error: {name} cannot be downloaded by ser: {obtain_text}", file=sys.stderr)
                sys.exit(NO_DOWNLOAD_STATUS)
        corpus_dir = os.path.join(args.download_dir, name)
        obtain(entries, args.download_dir, corpus_dir, url_base=args.url_base)
    except (DownloadError, OSError, ValueError) as err:
        die(err)
    if root:
        corpus_dir = os.path.join(corpus_dir, root)
    print(corpus_dir)


if __name__ == "__main__":
    main()
