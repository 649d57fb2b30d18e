"""Front-ends: what turns a stored utterance into the frame sequence the encoder reads.

``fbank``: precomputed Kaldi fbank (stage 1) normalised with the training fold's global CMVN statistics.
"""

FRONTEND_DEFAULTS = {
    "fbank": {"norm_vars": True},  # CMVN: subtract the global mean; divide by the global std when norm_vars
}
