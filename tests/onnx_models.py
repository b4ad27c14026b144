"""Model folders for the ONNX tests: the recipe's model with tiny random
weights, saved as a training checkpoint and exported (no training), and
PyTorch's posteriors to compare onnxruntime's with.
"""

import os

import numpy as np
import torch

#: The project's root folder and the recipe's hparams folder.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPARAMS = os.path.join(ROOT, "recipes", "IEMOCAP", "emotion_recognition",
                       "hparams")
LABELS = ("neu", "hap", "sad", "ang")


def build_model_folder(root, recipe, overrides):
    """A fake trained fold of ``recipe`` (random weights), exported."""
    from amser_sb.inference.random_model import random_model_folder

    return random_model_folder(
        os.path.join(HPARAMS, recipe), overrides, os.path.join(root, "exp"),
        os.path.join(root, "model"), LABELS, trained_batchnorm=True,
    )


def fusion_overrides(ssl_hub, root, **extra):
    return dict(
        ssl_hub=ssl_hub, am_resnet_channels=8, fusion_dim=16,
        fusion_heads=2, fusion_ffn_dim=32,
        pretrained_folder=os.path.join(root, "pretrained"),
        feature_cache_folder=os.path.join(root, "cache"), **extra,
    )


def torch_posteriors(clf, clips):
    out = []
    for clip in clips:
        post = clf.classify_batch(torch.from_numpy(clip)[None])[0]
        post = post.reshape(1, -1)
        out.append((post / post.sum()).detach().numpy())
    return np.concatenate(out)
