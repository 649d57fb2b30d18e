"""The classic SER reference: openSMILE functionals and a linear classifier, run through the recipe's folds.

One model per fold (and seed), trained on the training-fold speakers (the train and valid dirs together):

1. per-speaker normalisation when the protocol asks for it (ser.speaker_norm);
2. a standard scaler fit on the training rows;
3. multinomial logistic regression, its C chosen by speaker-grouped K-fold cross-validation over the
   training-fold speakers only (the test fold is never seen), scored by UA (balanced accuracy);
4. a final fit on every training row with the chosen C.

The fitted model is stored as plain arrays (``model.npz``), never pickled, and posteriors are computed from them
with numpy: softmax(scaled features @ coef.T + intercept).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import yaml

from ser.atomic import atomic_path, write_json
from ser.config import ConfigError, check_keys, check_type, config_hash, write_config
from ser.datadir import DataDirError
from ser.dataset import read_labels
from ser.functionals import FEATURE_SETS, read_utterance_features
from ser.registry import SYSTEMS, anything
from ser.rundir import claim_run_dir, git_revision
from ser.speaker_norm import SPEAKER_NORMS, read_speakers, speaker_normalise_rows
from ser.stamps import inputs_digest

log = logging.getLogger("ser.classic")

CLASSIC_DEFAULTS = {
    "system": "classic",  # marks a classic-reference config; ser.sh and ser.bin.train dispatch on it
    "feature_set": "ComParE_2016",  # openSMILE functionals: eGeMAPSv02 | ComParE_2016
    "speaker_norm": "none",  # none | cmvn (per-speaker z-normalisation; a transductive protocol)
    "c_grid": [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1, 1.0],  # inverse regularisation strengths tried by the CV
    "cv_folds": 5,  # speaker-grouped folds over the training-fold speakers
    "max_iter": 1000,  # solver iterations at most; a fit that stops there is a warning, recorded in selection.json
    "tol": 1.0e-6,  # newton-cg stopping tolerance. lbfgs at scikit-learn's default 1e-4 stopped far from the optimum
    # on 6373 ComParE features (implementations then disagreed); newton-cg reaches 1e-6 in about 15 steps
    "seed": 0,  # the lbfgs fit is deterministic; seeds only label the run
}
MODEL_FILE = "model.npz"
# Files a fold's run dir holds: config.yaml, run.json (identity), model.npz, selection.json (chosen C, CV scores).


def resolve_classic_config(given: dict, source: str = "config") -> dict:
    check_keys(given, CLASSIC_DEFAULTS, source)
    config = dict(CLASSIC_DEFAULTS)
    for key, value in given.items():
        config[key] = check_type(value, CLASSIC_DEFAULTS[key], f"{source}: {key}")
    checks = {
        "system": (config["system"] == "classic", "classic"),
        "feature_set": (config["feature_set"] in FEATURE_SETS, "one of " + ", ".join(FEATURE_SETS)),
        "speaker_norm": (config["speaker_norm"] in SPEAKER_NORMS, "one of " + ", ".join(SPEAKER_NORMS)),
        "c_grid": (len(config["c_grid"]) > 0 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                     and c > 0 for c in config["c_grid"]), "a list of numbers > 0"),
        "cv_folds": (config["cv_folds"] >= 2, "an integer >= 2"),
        "max_iter": (config["max_iter"] >= 1, "an integer >= 1"),
        "tol": (0 < config["tol"] < 1, "a number between 0 and 1"),
    }
    for key, (ok, expected) in checks.items():
        if not ok:
            raise ConfigError(f"{source}: {key} must be {expected}, got {config[key]!r}")
    config["c_grid"] = [float(c) for c in config["c_grid"]]
    return config


def load_functionals(feats_scp: str | None, data_dirs: list[str], classes: list[str]):
    """(X (N, F) float64, labels (N,), speakers, keys) of every utterance of ``data_dirs``, read from the
    functionals archive of data/all (``feats_scp``)."""
    labels, speakers, keys = [], [], []
    for data_dir in data_dirs:
        utt_labels = read_labels(data_dir, classes)
        dir_keys = list(utt_labels)
        labels.extend(utt_labels[k] for k in dir_keys)
        speakers.extend(read_speakers(data_dir, dir_keys))
        keys.extend(dir_keys)
    x = read_utterance_features(feats_scp, keys).astype(np.float64)
    return x, np.asarray(labels, dtype=np.int64), speakers, keys


@dataclass
class LinearModel:
    """Standardisation and a multinomial logistic regression: softmax(((x - mean) / scale) @ coef.T + intercept)."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)
    iterations: int | None = None  # solver iterations of the fit (None for a loaded model)

    def logits(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != self.coef.shape[1]:
            raise ValueError(f"the model reads {self.coef.shape[1]} functionals, got {x.shape[1]}")
        return ((x - self.mean) / self.scale) @ self.coef.T + self.intercept

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(self.logits(x))).astype(np.float32)

    def save(self, path: str, classes: list[str]) -> None:
        """The model as plain arrays (``np.load(allow_pickle=False)`` reads it back: read_linear_model)."""
        with atomic_path(path) as tmp:
            np.savez(tmp, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept,
                     classes=np.asarray(classes))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def read_linear_model(path: str) -> tuple[LinearModel, list[str]]:
    """A LinearModel saved by LinearModel.save (arrays only, no pickle) and its class order."""
    try:
        with np.load(path, allow_pickle=False) as z:
            model = LinearModel(z["mean"], z["scale"], z["coef"], z["intercept"])
            classes = [str(c) for c in z["classes"]]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a readable classic model ({e})") from None
    return model, classes


def row_space_basis(x: np.ndarray) -> np.ndarray | None:
    """Orthonormal rows (r, D) spanning the rows of x (N, D), from the eigenvectors of the Gram matrix; None when
    every row is zero."""
    eigvals, eigvecs = np.linalg.eigh(x @ x.T)
    keep = eigvals > max(eigvals.max(), 0.0) * 1e-10
    if not keep.any():
        return None
    return (eigvecs[:, keep] / np.sqrt(eigvals[keep])).T @ x


ABSENT_CLASS_LOGIT = -1.0e4  # intercept of a class without training rows: never predicted, posterior ~0


SOLVER = "newton-cg"  # scikit-learn's solver: second order, so converged fits are cheap on these features


def fit_path(x: np.ndarray, y: np.ndarray, cs: list[float], max_iter: int, num_classes: int | None = None,
             tol: float = CLASSIC_DEFAULTS["tol"]) -> list[LinearModel]:
    """One standardised L2 logistic regression per C, all on the same rows (``SOLVER``, to ``tol``).

    With more features than rows (ComParE: 6373 against about 1200), the L2 solution lies in the span of the
    rows, so each model is fit on the rows' coordinates in an orthonormal basis of that span and mapped back:
    the same optimum as a fit on all features, several times faster.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = x.std(0)
    scale[scale == 0] = 1.0  # constant features (StandardScaler's convention)
    xs = (x - mean) / scale
    basis = row_space_basis(xs) if xs.shape[1] > xs.shape[0] else None
    z = xs @ basis.T if basis is not None else xs
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    models = []
    for c in cs:
        with warnings.catch_warnings():  # not converging is logged below, once, with the fit's C
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=max_iter, tol=tol, solver=SOLVER).fit(z, y)
        iterations = int(np.max(clf.n_iter_))
        if iterations >= max_iter:
            log.warning("logistic regression at C=%g stopped at max_iter=%d before reaching tol=%g", c, max_iter,
                        tol)
        coef_z, intercept_z = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # scikit-learn's binary form: one row, the logit of the second class
            coef_z = np.concatenate([np.zeros_like(coef_z), coef_z])
            intercept_z = np.concatenate([[0.0], intercept_z])
        # Every class of the class set gets a row; a class without training rows is never predicted.
        coef = np.zeros((num_classes, x.shape[1]))
        intercept = np.full(num_classes, ABSENT_CLASS_LOGIT)
        coef[clf.classes_] = coef_z @ basis if basis is not None else coef_z
        intercept[clf.classes_] = intercept_z
        models.append(LinearModel(mean, scale, coef, intercept, iterations))
    return models


def speaker_grouped_cv(x: np.ndarray, y: np.ndarray, speakers: list[str], config: dict,
                       num_classes: int | None = None):
    """Speaker-grouped K-fold cross-validation over the training rows (no speaker in two folds): the mean UA of
    each C, and each C's held-out logits (N, classes): every row's from the fit on the folds without its speaker."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold

    groups = np.unique(speakers, return_inverse=True)[1]
    n_splits = min(config["cv_folds"], len(set(speakers)))
    if n_splits < 2:
        raise ValueError("choosing C by speaker-grouped cross-validation needs at least 2 training speakers")
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    scores: dict[float, list[float]] = {c: [] for c in config["c_grid"]}
    heldout = {c: np.zeros((len(y), num_classes)) for c in config["c_grid"]}
    for fit_idx, held_idx in GroupKFold(n_splits=n_splits).split(x, y, groups):
        models = fit_path(x[fit_idx], y[fit_idx], config["c_grid"], config["max_iter"], num_classes, config["tol"])
        for c, model in zip(config["c_grid"], models):
            heldout[c][held_idx] = model.logits(x[held_idx])
            scores[c].append(100.0 * balanced_accuracy_score(y[held_idx], heldout[c][held_idx].argmax(1)))
    return {c: float(np.mean(v)) for c, v in scores.items()}, heldout


def cross_validate_c(x: np.ndarray, y: np.ndarray, speakers: list[str], config: dict) -> dict[float, float]:
    """Mean UA of each C over speaker-grouped folds of the training rows (no speaker in two folds)."""
    return speaker_grouped_cv(x, y, speakers, config)[0]


def best_c(cv: dict[float, float]) -> float:
    """The C of the best mean CV UA; ties go to the stronger regularisation."""
    return max(cv, key=lambda c: (round(cv[c], 6), -c))


STACK_FILE = "stack_classic.npz"  # the stacked classic model of a neural run (config stacking: classic)
STACK_LOG_FLOOR = float(np.log(1e-6))  # log-posteriors below this are clipped (absent classes: about -1e4)


def stacked_features(model: LinearModel, x: np.ndarray) -> np.ndarray:
    """(N, classes) float32: the classic model's log-posteriors of the functionals x, floored at STACK_LOG_FLOOR."""
    return np.maximum(log_softmax(model.logits(x.astype(np.float64))), STACK_LOG_FLOOR).astype(np.float32)


def fit_stacker(x: np.ndarray, y: np.ndarray, speakers: list[str], num_classes: int, config: dict):
    """Stacking's classic model on the training rows: (out-of-fold features (N, classes), the model fit on every
    row, its record). C is chosen by speaker-grouped cross-validation (``config``) as the reference chooses it; each
    row's out-of-fold features are its log-posteriors under the cross-validation's fit at that C on the folds
    without the row's speaker, so no row is scored by a model that saw its speaker."""
    from threadpoolctl import threadpool_limits

    x = x.astype(np.float64)
    with threadpool_limits(limits=blas_threads()):
        cv, heldout = speaker_grouped_cv(x, y, speakers, config, num_classes)
        c = best_c(cv)
        (model,) = fit_path(x, y, [c], config["max_iter"], num_classes, config["tol"])
    oof = np.maximum(log_softmax(heldout[c]), STACK_LOG_FLOOR).astype(np.float32)
    record = {"C": c, "cv_ua": {str(k): v for k, v in cv.items()}, "cv_folds": min(config["cv_folds"],
              len(set(speakers))), "train_speakers": sorted(set(speakers)), "train_utterances": len(y),
              "solver": {"name": SOLVER, "tol": config["tol"], "max_iter": config["max_iter"],
                         "iterations": model.iterations}}
    return oof, model, record


def blas_threads() -> int:
    """BLAS threads for the fits: OMP_NUM_THREADS (ser.sh sets it per job), else 1. BLAS's own default (every core
    in every job) made scikit-learn about 100x slower on a 2-core machine."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def train_classic(config: dict, classes: list[str], feats_scp: str, train_dirs: list[str], outdir: str) -> dict:
    """Fit the reference on the training-fold speakers; write model.npz, selection.json; return the selection."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads()):
        return _train_classic(config, classes, feats_scp, train_dirs, outdir)


def _train_classic(config: dict, classes: list[str], feats_scp: str, train_dirs: list[str], outdir: str) -> dict:
    x, y, speakers, _ = load_functionals(feats_scp, train_dirs, classes)
    missing = [c for i, c in enumerate(classes) if not np.any(y == i)]
    if len(missing) >= len(classes) - 1:
        raise DataDirError(f"{', '.join(train_dirs)}: training utterances of at most one class; nothing to learn")
    if missing:
        log.warning("%s: no training utterance of class(es) %s: they are never predicted", ", ".join(train_dirs),
                    " ".join(missing))
    if config["speaker_norm"] == "cmvn":
        x = speaker_normalise_rows(x, speakers).astype(np.float64)
    cv = cross_validate_c(x, y, speakers, config)
    chosen_c = best_c(cv)
    (model,) = fit_path(x, y, [chosen_c], config["max_iter"], len(classes), config["tol"])
    os.makedirs(outdir, exist_ok=True)
    model.save(os.path.join(outdir, MODEL_FILE), classes)
    selection = {"rule": "speaker_grouped_cv", "description":
                 f"C of the logistic regression by {min(config['cv_folds'], len(set(speakers)))}-fold "
                 "speaker-grouped cross-validation over the training-fold speakers (mean UA); the test fold is "
                 "never seen", "C": chosen_c, "cv_ua": {str(c): cv[c] for c in config["c_grid"]},
                 "train_speakers": sorted(set(speakers)), "train_utterances": len(y),
                 "solver": {"name": SOLVER, "tol": config["tol"], "max_iter": config["max_iter"],
                            "iterations": model.iterations, "converged": model.iterations < config["max_iter"]}}
    log.info("%s: C=%g chosen (CV UA %s)", outdir, chosen_c, ", ".join(f"{c:g}: {v:.2f}" for c, v in cv.items()))
    write_json(os.path.join(outdir, "selection.json"), selection)
    return selection


def load_classic_model(model_dir: str) -> tuple[LinearModel, list[str]]:
    """The fitted reference of a fold (arrays only, no pickle) and its class order."""
    path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir}: no {MODEL_FILE}; is training of this fold finished?")
    return read_linear_model(path)


def classify_classic(config: dict, model_dir: str, feats_scp: str, data_dir: str):
    """(keys, posteriors) of a test data dir; with speaker_norm, each test speaker is normalised with the
    statistics of its own test utterances."""
    model, classes = load_classic_model(model_dir)
    x, _, speakers, keys = load_functionals(feats_scp, [data_dir], classes)
    if config["speaker_norm"] == "cmvn":
        x = speaker_normalise_rows(x, speakers).astype(np.float64)
    return keys, model.posteriors(x)


def train_classic_run(config: dict, classes: list[str], feats_scp: str | None, train_dirs: list[str],
                      outdir: str) -> dict:
    """A fold's reference in its run dir, with the neural trainer's conventions: a finished run with the same
    identity is kept as it is; a run dir of another identity is moved aside, never overwritten."""
    if not feats_scp:
        raise ValueError(f"the classic reference reads {config['feature_set']} functionals: give their archive "
                         "(--functionals-scp)")
    labels = [os.path.join(d, f) for d in train_dirs for f in ("utt2emo", "utt2spk")]
    identity = {"config_hash": config_hash(config), "classes": classes, "train_data": inputs_digest(labels)[:12],
                "functionals": inputs_digest([feats_scp])[:12]}
    claim_run_dir(outdir, identity)
    selection_path = os.path.join(outdir, "selection.json")
    if os.path.isfile(selection_path) and os.path.isfile(os.path.join(outdir, MODEL_FILE)):
        log.info("%s: already trained; nothing to do", outdir)
        with open(selection_path) as f:
            return json.load(f)
    os.makedirs(outdir, exist_ok=True)
    write_config(config, os.path.join(outdir, "config.yaml"))
    write_json(os.path.join(outdir, "run.json"), {"identity": identity, "train_dirs": train_dirs,
                                                  "functionals_scp": feats_scp, "git_revision": git_revision()})
    return train_classic(config, classes, feats_scp, train_dirs, outdir)


def read_classic_config(model_dir: str) -> dict | None:
    """The resolved config of a classic-reference run dir, or None when the run dir holds a neural model."""
    path = os.path.join(model_dir, "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir}: no config.yaml; is training of this fold finished?")
    with open(path) as f:
        given = yaml.safe_load(f) or {}
    return resolve_classic_config(given, path) if given.get("system") == "classic" else None


SYSTEMS.register("classic", train_classic_run, CLASSIC_DEFAULTS, {key: anything() for key in CLASSIC_DEFAULTS},
                 resolve_config=resolve_classic_config)  # resolve_classic_config checks every value
