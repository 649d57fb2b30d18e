"""ser: speech emotion recognition recipes (Kaldi/ESPnet style) with the MLL method (EAM, FLAM, multi-loss)."""

from setuptools import find_packages, setup

setup(
    name="ser",
    version="0.1.0",
    description="Speech emotion recognition recipes: Kaldi data dirs, fbank, EAM mixup, FLAM encoder, multi-loss",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ser", "ser.*"]),
    python_requires=">=3.9",
    # Installed into the environment's bin/: usable without activating it (tools/venv/bin/ser-classify).
    entry_points={"console_scripts": ["ser-classify=ser.bin.classify:main"]},
    install_requires=[
        # torch is installed first by tools/install.sh with an explicit version and build (CPU or CUDA);
        # an unpinned `pip install torch` pulls a CUDA build of several GB.
        "torch>=2.1",
        "numpy>=1.22",
        "scipy>=1.8",
        "kaldiio>=2.18",
        "kaldi-native-fbank>=1.20",
        "soundfile>=0.12",
        "PyYAML>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "tensorboard>=2.10",
    ],
    extras_require={
        # The tests exercise the classic reference too, so they take the opensmile extra's packages.
        "test": ["pytest>=7", "pytest-xdist>=3.5", "scikit-learn>=1.1", "pytorch-metric-learning>=2.3",
                 "transformers>=4.40",
                 "opensmile>=2.5", "ruff>=0.6", "onnx>=1.17", "onnxscript>=0.5", "onnxruntime>=1.20"],
        "wavlm": ["transformers>=4.40"],
        # ONNX export (ser.bin.export_model --format onnx); onnxruntime runs the exported model.
        "onnx": ["onnx>=1.17", "onnxscript>=0.5", "onnxruntime>=1.20"],
        # The classic reference (openSMILE functionals + logistic regression) and the functionals fusion.
        # opensmile's wheel carries audEERING's research licence: non-commercial use only.
        "opensmile": ["opensmile>=2.5", "scikit-learn>=1.1"],
    },
)
