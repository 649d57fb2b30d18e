"""Cache a frozen self-supervised encoder's frames once for the ``ssl_cached`` front-end (ser.ssl_cache).

    python -m ser.bin.cache_ssl --config conf/train_ssl_cached.yaml [--set K=V ...] --data-dir data \\
        --cache-root dump/ssl [--ngpu 1] [--print-dir]

The config's front-end must cache its frames (caches_frames: ssl_cached).
Its cache is <cache-root>/<key>, the key a digest of the checkpoint's
content, the layer, the stored dtype and normalize_wave, so other settings never share a cache. Computes the frames
of every utterance of data/all into <cache>/all (skipped when its record matches these settings and data/all's
wav.scp), then the data dirs of every fold and set, <cache>/fold<k>/{train,valid,test} (the data dir's tables
restricted to the set's utterances, with the record). Prints the cache dir on stdout; --print-dir prints it and
computes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from ser.atomic import copy_file, write_text
from ser.cli import die, select_device

TABLES = ("wav.scp", "utt2spk", "spk2utt", "utt2emo", "utt2vad", "spk2gender", "utt2dur", "classes.txt")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as ser.bin.train's --set")
    p.add_argument("--data-dir", required=True, help="the recipe's data dir (all/, protocol.json, fold<k>/<set>)")
    p.add_argument("--cache-root", required=True, help="caches are written to <cache-root>/<key>")
    p.add_argument("--ngpu", type=int, default=0, help="run the encoder on a GPU (1) or the CPU (0)")
    p.add_argument("--print-dir", action="store_true", help="print the cache dir and compute nothing")
    args = p.parse_args(argv)
    import ser.components  # noqa: F401 (fills the registries the config is resolved by)
    from ser.config import ConfigError, load_config, parse_overrides
    from ser.datadir import DataDirError, write_fold_dirs
    from ser.frontends import frontend_of, frontends_that
    from ser.models.ssl_cache import write_cache
    from ser.ssl_cache import (
        CACHE_RECORD,
        cache_key,
        cache_settings,
        read_record,
        record_of_checkpoint,
        wav_scp_digest,
    )

    try:
        config = load_config(args.config, parse_overrides(args.set))
        if not frontend_of(config).caches_frames:
            raise ConfigError(f"{args.config}: frontend is {config['frontend']}; caching is for "
                              f"{', '.join(frontends_that('caches_frames'))}")
        conf = config["frontend_conf"]
        settings = cache_settings(conf, record_of_checkpoint(args.cache_root, conf["path"]))
        cache_dir = os.path.join(args.cache_root, cache_key(settings))
        if args.print_dir:
            print(cache_dir)
            return
        src, all_dir = os.path.join(args.data_dir, "all"), os.path.join(cache_dir, "all")
        done = os.path.join(cache_dir, ".done")
        current = os.path.isfile(done) and os.path.isfile(os.path.join(all_dir, CACHE_RECORD))
        if current:
            record = read_record(all_dir)
            current = record["settings"] == settings and record["wav_scp"] == wav_scp_digest(src)
        if current:
            print(f"cache_ssl: {cache_dir} is up to date; nothing to do", file=sys.stderr)
        else:
            shutil.rmtree(cache_dir, ignore_errors=True)
            print(f"cache_ssl: frames of {src} -> {all_dir}", file=sys.stderr)
            record = write_cache(src, all_dir, conf, frontend_of(config).model_types, select_device(args.ngpu))
            for name in TABLES:
                if os.path.isfile(os.path.join(src, name)):
                    copy_file(os.path.join(src, name), os.path.join(all_dir, name))
            for _, _, _, out in write_fold_dirs(args.data_dir, all_dir, cache_dir):
                copy_file(os.path.join(all_dir, CACHE_RECORD), os.path.join(out, CACHE_RECORD))
            write_text(done, record["key"] + "\n")
            print(f"cache_ssl: {record['utterances']} utterances, {record['frames']} frames of "
                  f"{record['num_states']} x {record['hidden_size']} {conf['dtype']} -> {cache_dir}", file=sys.stderr)
        print(cache_dir)
    except (OSError, ValueError, KeyError, DataDirError, ConfigError) as e:
        die(e)


if __name__ == "__main__":
    main()
