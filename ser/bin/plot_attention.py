"""Picture of what FLAM attends to: an utterance's fbank with the pooling weights over time beneath it.

    python -m ser.bin.plot_attention --model-dir exp/<tag>/seed0/fold1 some.wav attention.png
"""

from __future__ import annotations

import argparse
import os

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="a finished training run with flam pooling")
    p.add_argument("wav", help="audio file (resampled and down-mixed as in stage 1)")
    p.add_argument("out_png")
    args = p.parse_args(argv)
    import torch

    from ser.infer import load_trained, model_input_of_wav
    from ser.plot import plot_attention

    try:
        trained = load_trained(args.model_dir)
        picture, shift = trained.frontend.picture_of_wav(args.wav, args.model_dir)
        frames, utterance = model_input_of_wav(trained, args.wav)
        feats = torch.from_numpy(frames)[None]
        with torch.no_grad():
            out = trained.model(feats, torch.tensor([feats.shape[1]]),
                                None if utterance is None else torch.from_numpy(utterance))
        if out.attention is None:
            die(f"{args.model_dir}: the model pools with {trained.config['encoder_conf'].get('pooling', 'mean')}, "
                "which has no attention weights; use a model with pooling: flam")
        probs = torch.softmax(out.logits, -1)[0]
        best = int(probs.argmax())
        title = f"{os.path.basename(args.wav)}: {trained.classes[best]} ({100 * float(probs[best]):.0f}%)"
        plot_attention(picture, out.attention[0, : int(out.frame_lengths[0])].numpy(), shift, args.out_png, title)
    except (OSError, ValueError) as e:
        die(e)
    print(f"written: {args.out_png}")


if __name__ == "__main__":
    main()
