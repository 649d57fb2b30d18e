"""ser: speech emotion recognition recipes in the Kaldi/ESPnet tradition."""

__version__ = "0.1.0"


def __getattr__(name):
    """``from ser import EmotionRecognizer`` without importing torch for every ``import ser``."""
    if name in ("EmotionRecognizer", "Prediction"):
        from ser import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
