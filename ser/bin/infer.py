"""Classify the utterances of a data dir with a trained model: writes posteriors and predictions."""

from __future__ import annotations

import argparse

from ser.cli import die, select_device, setup_logging


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", required=True, help="a finished training run (exp/<tag>/seed<s>/fold<k>)")
    p.add_argument("--data-dir", required=True, help="data dir with feats.scp and utt2emo")
    p.add_argument("--outdir", required=True)
    p.add_argument("--functionals-scp", help="openSMILE functionals of data/all (models that fuse them)")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    setup_logging()
    from ser.classic import classify_classic, load_classic_model, read_classic_config
    from ser.infer import classify_data_dir, load_trained, write_predictions

    try:
        classic = read_classic_config(args.model_dir)
        if classic is not None:
            keys, posteriors = classify_classic(classic, args.model_dir, args.functionals_scp, args.data_dir)
            write_predictions(args.outdir, keys, posteriors, load_classic_model(args.model_dir)[1])
            return
        device = select_device(args.ngpu)
        trained = load_trained(args.model_dir, device)
        data, posteriors = classify_data_dir(trained, args.data_dir, device, args.functionals_scp)
        write_predictions(args.outdir, data.keys, posteriors, trained.classes)
    except (OSError, ValueError) as e:
        die(e)


if __name__ == "__main__":
    main()
