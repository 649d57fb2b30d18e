"""Corpus preparation: one module per corpus, each turning a released corpus into Utterance records.

``CORPORA`` is the registry: a corpus name (``--corpus``) and the module that prepares it. A module holds the
corpus's parser (``prepare``), class sets, published counts and fold rule (see ``ser.corpora.common.CorpusSpec``);
adding a corpus is one module and one line here. Each module states its data's ``LICENCE`` (model cards quote it).
``--corpus`` also takes the path of a module file outside the package (``local/mycorpus.py``), and
``--corpus-manifest FILE.csv`` needs no module at all (``manifest``).
"""

import importlib
import importlib.util
import os

CORPORA = {
    "aesdd": "ser.corpora.aesdd",
    "ased": "ser.corpora.ased",
    "cafe": "ser.corpora.cafe",
    "cremad": "ser.corpora.cremad",
    "emodb": "ser.corpora.emodb",
    "emovdb": "ser.corpora.emovdb",
    "emovo": "ser.corpora.emovo",
    "iemocap": "ser.corpora.iemocap",
    "jlcorpus": "ser.corpora.jlcorpus",
    "manifest": "ser.corpora.manifest",
    "mesd": "ser.corpora.mesd",
    "msp_improv": "ser.corpora.msp_improv",
    "oreau": "ser.corpora.oreau",
    "polish": "ser.corpora.polish",
    "ravdess": "ser.corpora.ravdess",
    "savee": "ser.corpora.savee",
    "shemo": "ser.corpora.shemo",
    "subesco": "ser.corpora.subesco",
    "synth": "ser.corpora.synth",
    "tess": "ser.corpora.tess",
    "urdu": "ser.corpora.urdu",
}


def corpus_module(name: str):
    """The module of a registered corpus, or of a module file (``path/to/mycorpus.py``) that follows the same
    interface; an unknown name is a ValueError listing the registered ones."""
    if name.endswith(".py"):
        if not os.path.isfile(name):
            raise ValueError(f"--corpus {name}: no such corpus module file")
        module_name = "ser_user_corpus_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(name)[:-3])
        spec = importlib.util.spec_from_file_location(module_name, name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if name not in CORPORA:
        raise ValueError(f"--corpus {name}: unknown corpus; registered: {' '.join(sorted(CORPORA))} "
                         "(or give a module file, path/to/mycorpus.py, or --corpus-manifest FILE.csv)")
    return importlib.import_module(CORPORA[name])
