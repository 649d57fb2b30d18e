"""Corpus preparation: one module per corpus, each turning a released corpus into Utterance records.

``CORPORA`` is the registry: a corpus name (``--corpus``) and the module that prepares it. A module holds the
corpus's parser (``prepare``), class sets, published counts and fold rule (see ``ser.corpora.common.CorpusSpec``);
adding a corpus is one module and one line here. ``--corpus`` also takes the path of a module file outside the
package (``local/mycorpus.py``), and ``--corpus-manifest FILE.csv`` needs no module at all (``manifest``).
"""

CORPORA = {
    "cafe": "ser.corpora.cafe",
    "cremad": "ser.corpora.cremad",
    "emodb": "ser.corpora.emodb",
    "emovo": "ser.corpora.emovo",
    "iemocap": "ser.corpora.iemocap",
    "manifest": "ser.corpora.manifest",
    "msp_improv": "ser.corpora.msp_improv",
    "ravdess": "ser.corpora.ravdess",
    "savee": "ser.corpora.savee",
    "synth": "ser.corpora.synth",
    "tess": "ser.corpora.tess",
    "urdu": "ser.corpora.urdu",
}
