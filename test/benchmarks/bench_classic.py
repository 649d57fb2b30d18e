#!/usr/bin/env python3
"""The classic reference's fit: ser's row-space fit against scikit-learn on all features, same data, same run.

    bench_classic.py [--functionals egs/ravdess/dump/functionals/ComParE_2016/feats.scp]
                     [--data-dirs egs/ravdess/data/fold1/train egs/ravdess/data/fold1/valid]

Fits the C grid of conf/classic/compare.yaml once each way on one fold's training speakers and reports both
times, their ratio (ser / scikit-learn; below 1 is faster) and the largest difference of the posteriors on the
fold's test set. Without the RAVDESS functionals it uses random data of the same shape (1200 x 6373). One BLAS
thread (OMP_NUM_THREADS=1), as the recipe runs it.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAVDESS = os.path.join(REPO, "egs", "ravdess")


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    from ser.classic import CLASSIC_DEFAULTS, fit_path, load_functionals

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functionals", default=os.path.join(RAVDESS, "dump", "functionals", "ComParE_2016", "feats.scp"))
    p.add_argument("--data-dirs", nargs=3, default=[os.path.join(RAVDESS, "data", "fold1", d)
                                                    for d in ("train", "valid", "test")],
                   help="train, valid and test data dirs of one fold")
    args = p.parse_args()
    if os.path.isfile(args.functionals):
        classes = open(os.path.join(os.path.dirname(args.data_dirs[0]), "..", "all", "classes.txt")).read().split()
        x, y, _, _ = load_functionals(args.functionals, args.data_dirs[:2], classes)
        x_test = load_functionals(args.functionals, args.data_dirs[2:], classes)[0]
        source = args.functionals
    else:
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(8), 150)
        x = rng.normal(size=(1200, 6373)) + 0.3 * y[:, None] * (np.arange(6373) < 50)
        x_test = rng.normal(size=(240, 6373))
        source = "random data, 1200 x 6373 (no RAVDESS functionals found)"
    grid = CLASSIC_DEFAULTS["c_grid"]
    start = time.time()
    ours = fit_path(x, y, grid, CLASSIC_DEFAULTS["max_iter"])
    ours_s = time.time() - start
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    start = time.time()
    references = [LogisticRegression(C=c, max_iter=CLASSIC_DEFAULTS["max_iter"]).fit((x - mean) / scale, y)
                  for c in grid]
    sklearn_s = time.time() - start
    print(f"data: {source}; {x.shape[0]} training rows x {x.shape[1]} functionals; C grid {grid}")
    print(f"row-space fit: {ours_s:.2f} s   scikit-learn on all features: {sklearn_s:.2f} s   "
          f"ratio {ours_s / sklearn_s:.2f}")
    # Both solve the same convex problem; lbfgs stops at its tolerance, which leaves weakly regularised fits
    # (large C) apart in the posteriors while their decisions still agree.
    # The objective each reached (lower is closer to the common optimum): C * sum of log-losses + ||W||^2 / 2.
    def objective(c, coef, intercept):
        logits = ((x - mean) / scale) @ coef.T + intercept
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return c * -log_p[np.arange(len(y)), y].sum() + 0.5 * float((coef ** 2).sum())

    for c, m, r in zip(grid, ours, references):
        p_ours, p_ref = m.posteriors(x_test), r.predict_proba((x_test - mean) / scale)
        print(f"C={c:g}: objective {objective(c, m.coef, m.intercept):.4f} (row space) vs "
              f"{objective(c, r.coef_, r.intercept_):.4f} (all features); largest posterior difference "
              f"{np.abs(p_ours - p_ref).max():.4f}, same decision on "
              f"{100 * np.mean(p_ours.argmax(1) == p_ref.argmax(1)):.1f}% of {len(x_test)} test rows")


if __name__ == "__main__":
    main()
