"""amser-sb: cross-feature fusion speech emotion recognition for SpeechBrain.

Install for use:      pip install -c constraints.txt .
Install for testing:  pip install -c constraints.txt -e ".[test]"

``constraints.txt`` pins a torch/torchaudio pair seen working together;
the ranges below are what the code itself needs.
"""

from setuptools import find_packages, setup

setup(
    name="amser-sb",
    version="0.1.0",
    description=(
        "SpeechBrain recipe plugin: AM-ResNet + wav2vec 2.0 cross-feature "
        "fusion for speech emotion recognition (Li & Zhang, DCN 2025)"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["amser_sb", "amser_sb.*"]),
    include_package_data=True,
    # the inference template of `amser-sb export`, next to its module
    package_data={"amser_sb.inference": ["inference.yaml"]},
    install_requires=[
        "speechbrain>=1.1,<1.2",
        "torch>=2.1",
        "torchaudio>=2.1",
        "transformers>=4.40",
        "huggingface_hub>=0.23",
        "hyperpyyaml>=1.2",
        "soundfile>=0.12",
        "numpy",
        "matplotlib",
        "tqdm",
    ],
    # onnx: `amser-sb export-onnx` and `classify --runtime onnx`;
    # ctranslate2: only the tests of amser_sb.weights.ct2_whisper (they compare runtimes)
    extras_require={
        "onnx": ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.3"],
        "test": [
            "pytest>=7", "pytest-xdist>=3.5", "filelock>=3.12",
            "ctranslate2>=4.0", "onnx>=1.17",
            "onnxruntime>=1.20", "onnxscript>=0.3",
        ],
    },
    entry_points={"console_scripts": ["amser-sb=amser_sb.cli:main"]},
)
