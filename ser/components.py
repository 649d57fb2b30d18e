"""Every component module, imported once so that each fills its registry (ser.registry).

ser.config resolves a config by asking the registries and imports no component; what resolves or builds from a
config imports this module first: the entry points (ser.bin.*), ser.infer (models rebuilt from stored configs) and,
through it, ser.train and the recogniser. Adding a component is one module with one ``register`` line, and one
import here unless it lives in a package imported here (a front-end: ser.frontends; an encoder: ser.models).
"""

from __future__ import annotations

import ser.augment  # noqa: F401  mixups: AUGMENTS
import ser.classic  # noqa: F401  the classic reference: SYSTEMS
import ser.frontends  # noqa: F401  front-ends: FRONTENDS
import ser.functionals  # noqa: F401  functionals fused into the model: FUNCTIONALS
import ser.losses  # noqa: F401  loss terms: LOSS_TERMS, LOSS_SHARED
import ser.models  # noqa: F401  encoders: ENCODERS
import ser.optim  # noqa: F401  optimizers and schedulers: OPTIMIZERS, SCHEDULERS
import ser.speaker_norm  # noqa: F401  per-speaker normalisation: SPEAKER_NORMS
import ser.specaug  # noqa: F401  SpecAugment: SPECAUGS
