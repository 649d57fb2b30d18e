"""MESD, the Mexican Emotional Speech Database (Duville, Alonso-Valerdi & Ibarra-Zarate, 2021), as released.

Layout read (the release's folder, in the corpus dir or as the corpus dir itself)::

    Mexican Emotional Speech Database (MESD)/<Emotion>_<V>_<C>_<word>.wav     e.g. Anger_C_A_abajo.wav

Emotion is Anger Disgust Fear Happiness Neutral Sadness; V the voice type (F adult female, M adult male, C child);
C the word corpus (A or B); word the Spanish single word (underscores join multi-word items: basta_ya).
48 kHz mono. The release page (Mendeley Data, doi 10.17632/cy34mh68j9) names 3 female, 2 male and 6 child
voices, but file names carry only the voice type, never the person.

Speakers: individual speaker identity is not recoverable, so the speaker id is the voice type (``female``,
``male``, ``child``), as in EmoBox (whose "spk" is the voice type too). Every real speaker lies inside one voice
type, so folds by voice type are still speaker-independent, though coarse: the default is leave one voice type
out (3 folds). Gender: female -> "f", male -> "m"; the children's genders are not published (None), so no spk2gender is
written.

EmoBox tests one speaker-DEPENDENT fold (25% of each class drawn at random by its write_folds, seeded over its
file order); that draw cannot be re-derived, so no "emobox" scheme is offered.
"""

from __future__ import annotations

import os
import re

from ser.corpora.common import CorpusError, Utterance, check_unique, folds_by_group, map_label, resolve_class_set

CORPUS = "mesd"
LICENCE = "Creative Commons Attribution 4.0 (CC BY 4.0)"

EMOTIONS = {"Anger": "angry", "Disgust": "disgust", "Fear": "fear", "Happiness": "happy", "Neutral": "neutral",
            "Sadness": "sad"}
CLASS_SETS: dict[str, dict[str, str]] = {"6class": dict(EMOTIONS)}  # = EmoBox's label_map.json
DEFAULT_CLASS_SET = "6class"

# EmoBox's data/mesd/mesd.jsonl (the release it downloaded): 862 files; the design is 6 emotions x 3 voice types x
# 48 words = 864, and that release lacks one child Anger and one child Neutral word.
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "6class": {"angry": 143, "disgust": 144, "fear": 144, "happy": 144, "neutral": 143, "sad": 144},  # 862
}
NUM_VOICES = 11  # release page: 3 female, 2 male, 6 child voices (not identifiable per file)
NUM_SPEAKERS = 3  # the speaker ids: the voice types
GENDER_UNKNOWN = None  # the children's genders are not published
VOICE_TYPES = {"F": ("female", "f"), "M": ("male", "m"), "C": ("child", GENDER_UNKNOWN)}
FOLD_ORDER = ("female", "male", "child")
FOLD_SCHEME = "leave one voice type out (3 folds: female, male, child); speaker identity is not in the release"

RELEASE_FOLDER = "Mexican Emotional Speech Database (MESD)"
_FILE_NAME = re.compile(r"^([A-Za-z]+)_([A-Z])_([A-Z])_([a-z0-9_]+)\.wav$")


def _audio_dir(corpus_dir: str) -> str:
    inner = os.path.join(corpus_dir, RELEASE_FOLDER)
    return inner if os.path.isdir(inner) else corpus_dir


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from the release folder.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse, an
    unknown emotion, voice type or word corpus.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    folder = _audio_dir(corpus_dir)
    wavs = sorted(name for name in os.listdir(folder) if name.lower().endswith(".wav")) \
        if os.path.isdir(folder) else []
    if not wavs:
        raise CorpusError(f"{CORPUS}: no .wav files in {folder}: expected '{RELEASE_FOLDER}/Anger_F_A_abajo.wav' ...")
    utts = []
    for name in wavs:
        wav = os.path.join(folder, name)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <Emotion>_<F|M|C>_<A|B>_<word>.wav")
        emotion_raw, voice, word_corpus, _ = match.groups()
        if voice not in VOICE_TYPES or word_corpus not in ("A", "B"):
            raise CorpusError(f"{wav}: voice type {voice} (F, M, C) or word corpus {word_corpus} (A, B) unknown")
        emotion = map_label(emotion_raw, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        spk, gender = VOICE_TYPES[voice]
        utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, gender))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one voice type out: fold 1 tests female, 2 male, 3 child."""
    return folds_by_group(utts, lambda spk: FOLD_ORDER.index(spk) + 1, len(FOLD_ORDER), CORPUS)


OBTAIN = "https://data.mendeley.com/datasets/cy34mh68j9 (Mendeley Data); Creative Commons Attribution 4.0"
