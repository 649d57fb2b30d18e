"""Emotion names as corpora spell them: one table of canonical names and their aliases.

Recipes keep their corpus's own class names (synth, IEMOCAP and MSP-IMPROV ``ang hap neu sad``; RAVDESS
``neutral calm happy sad angry fearful disgust surprised``; SAVEE ``a d f h n sa su``; new corpora lowercase English
names). Comparing two class lists, e.g. a model's and another corpus's in cross-corpus evaluation, goes through
this table and nowhere else:

    shared_classes(["ang", "hap", "neu", "sad"], ["neutral", "calm", "happy", "sad", "angry", "fearful"])
    -> {"ang": "angry", "hap": "happy", "neu": "neutral", "sad": "sad"}

Names compare case-insensitively; a name the table does not know matches only itself (case aside).
"""

from __future__ import annotations

# canonical name: aliases (the canonical name itself is always one). Single letters are SAVEE's codes (a d f h n)
# and MSP-IMPROV's raw labels (A H N S).
EMOTIONS: dict[str, tuple[str, ...]] = {
    "angry": ("ang", "anger", "a"),
    "happy": ("hap", "happiness", "joy", "h"),
    "neutral": ("neu", "n"),
    "sad": ("sadness", "sa", "s"),
    "fear": ("fearful", "fea", "afraid", "f"),
    "disgust": ("dis", "disgusted", "d"),
    "surprise": ("surprised", "sur", "su"),
    "calm": ("cal",),
    "boredom": ("bored", "bor"),
    "contempt": ("con", "contemptuous"),
    "excited": ("exc", "excitement"),
    "frustrated": ("fru", "frustration"),
    "other": ("oth",),
}

_CANONICAL: dict[str, str] = {}
for _name, _aliases in EMOTIONS.items():
    for _alias in (_name, *_aliases):
        if _alias in _CANONICAL:
            raise AssertionError(f"ser.emotions: {_alias} is an alias of both {_CANONICAL[_alias]} and {_name}")
        _CANONICAL[_alias] = _name


def canonical(name: str) -> str:
    """The canonical emotion name of a class name (case-insensitive); an unknown name stands for itself."""
    key = name.strip().lower()
    return _CANONICAL.get(key, key)


def shared_classes(model_classes, target_classes) -> dict[str, str]:
    """{model class: target class} for every emotion both lists name (in the model's class order).

    Two classes of one list naming the same emotion (``ang`` and ``angry``) are ambiguous: a ValueError.
    """
    def by_emotion(classes, which):
        found: dict[str, str] = {}
        for c in classes:
            emotion = canonical(c)
            if emotion in found:
                raise ValueError(f"{which} classes {found[emotion]} and {c} both name the emotion {emotion}")
            found[emotion] = c
        return found

    model, target = by_emotion(model_classes, "model"), by_emotion(target_classes, "target")
    return {c: target[e] for e, c in model.items() if e in target}
