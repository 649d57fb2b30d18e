"""Corpus preparation: one module per corpus, each turning a released corpus into Utterance records."""
