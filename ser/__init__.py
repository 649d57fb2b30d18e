"""ser: speech emotion recognition recipes in the Kaldi/ESPnet tradition."""

from ser.version import __version__  # noqa: F401


def __getattr__(name):
    """``from ser import EmotionRecognizer`` without importing torch for every ``import ser``."""
    if name in ("EmotionRecognizer", "Prediction"):
        from ser import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
