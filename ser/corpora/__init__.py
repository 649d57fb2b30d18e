"""Corpus preparation: one module per corpus, each turning a released corpus into Utterance records.

``CORPORA`` is the registry: a corpus name (``--corpus``) and the module that prepares it. A module holds the
corpus's parser (``prepare``), class sets, published counts and fold rule (see ``ser.corpora.common.CorpusSpec``);
adding a corpus is one module and one line here. ``--corpus`` also takes the path of a module file outside the
package (``local/mycorpus.py``), and ``--corpus-manifest FILE.csv`` needs no module at all (``manifest``).
"""

CORPORA = {
    "ased": "ser.corpora.ased",
    "emovdb": "ser.corpora.emovdb",
    "iemocap": "ser.corpora.iemocap",
    "jlcorpus": "ser.corpora.jlcorpus",
    "manifest": "ser.corpora.manifest",
    "msp_improv": "ser.corpora.msp_improv",
    "oreau": "ser.corpora.oreau",
    "polish": "ser.corpora.polish",
    "ravdess": "ser.corpora.ravdess",
    "savee": "ser.corpora.savee",
    "synth": "ser.corpora.synth",
    "urdu": "ser.corpora.urdu",
}
