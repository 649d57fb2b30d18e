"""Classify audio files with a trained model and print the posteriors: classify_wav.py --model-dir DIR a.wav ..."""

from __future__ import annotations

import argparse

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", required=True, help="a finished training run (exp/<tag>/seed<s>/fold<k>)")
    p.add_argument("wavs", nargs="+", help="audio files (any sample rate / channel count; resampled as in stage 1)")
    args = p.parse_args(argv)
    import torch

    from ser.infer import load_trained, model_input_of_wav

    try:
        trained = load_trained(args.model_dir)
        print("file " + " ".join(trained.classes) + " prediction")
        for wav in args.wavs:
            frames, utterance = model_input_of_wav(trained, wav)
            feats = torch.from_numpy(frames)[None]
            with torch.no_grad():
                out = trained.model(feats, torch.tensor([feats.shape[1]]),
                                    None if utterance is None else torch.from_numpy(utterance))
            probs = torch.softmax(out.logits, -1)[0].tolist()
            best = trained.classes[max(range(len(probs)), key=probs.__getitem__)]
            print(wav + " " + " ".join(f"{p:.4f}" for p in probs) + " " + best)
    except (OSError, ValueError) as e:
        die(str(e))


if __name__ == "__main__":
    main()
