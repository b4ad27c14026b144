"""Overrides of a tiny, fast recipe run, shared by the end-to-end tests.

Two IEMOCAP-layout sessions, 1 s segments and a small model (8 AM-ResNet
channels, a 16-wide fusion), no checkpoints by time; each test adds what it
varies (epochs, batch size, segment choice, ...).
"""

import os

#: The recipe's folder (``train.py``, ``hparams/``).
RECIPE_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "IEMOCAP",
    "emotion_recognition",
)

#: The recipe's full model (AM-ResNet + encoder, cross-attention).
RECIPE_FULL = os.path.join(RECIPE_DIR, "hparams", "am_resnet_w2v2.yaml")


def tiny_run_values(corpus, ssl_hub, out, **extra):
    """``{hparam: value}`` of a tiny run writing under ``out``.

    Arguments
    ---------
    corpus : str
        IEMOCAP-layout corpus folder.
    ssl_hub : str
        Encoder folder (a tiny local model).
    out : pathlib.Path
        Output root; the feature cache and pretrained folder go under it.
    **extra
        Further or different values.

    Returns
    -------
    dict
    """
    values = {
        "data_folder": corpus,
        "ssl_hub": ssl_hub,
        "output_root": str(out),
        "feature_cache_folder": str(out / "cache"),
        "pretrained_folder": str(out / "pretrained"),
        "prepare_sessions": "[1, 2]",
        "prepare_num_workers": 1,
        "num_workers": 0,
        "segment_seconds": 1.0,
        "am_resnet_channels": 8,
        "fusion_dim": 16,
        "fusion_heads": 2,
        "fusion_ffn_dim": 32,
        "ckpt_interval_minutes": 0,
    }
    values.update(extra)
    return values
