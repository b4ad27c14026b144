"""Shared pytest fixtures: tiny local wav2vec2 folders (never the Hub)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The tests run tiny models: one intra-op thread is as fast on an idle
# machine and avoids OpenMP oversubscription (3x slower runs) on a busy
# one. Set OMP_NUM_THREADS to choose otherwise.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_w2v2_group(tmp_path_factory):
    """A tiny random wav2vec2 with a group-norm feature encoder
    (wav2vec2-base style); the folder path as str."""
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    folder = tmp_path_factory.mktemp("tiny_w2v2_group")
    return build_random_wav2vec2(folder, "tiny", feat_extract_norm="group")


@pytest.fixture(scope="session")
def tiny_w2v2_layer(tmp_path_factory):
    """A tiny random wav2vec2 with a layer-norm feature encoder and
    ``do_stable_layer_norm=True`` (wav2vec2-large-lv60 / WavLM style); the
    folder path as str."""
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    folder = tmp_path_factory.mktemp("tiny_w2v2_layer")
    return build_random_wav2vec2(folder, "tiny", feat_extract_norm="layer")
