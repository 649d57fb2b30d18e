"""ser: speech emotion recognition recipes in the Kaldi/ESPnet tradition."""

__version__ = "0.1.0"
