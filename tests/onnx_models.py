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
    from hyperpyyaml import load_hyperpyyaml, resolve_references
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.utils.checkpoints import Checkpointer

    from amser_sb.inference.export import export_model

    fold = os.path.join(root, "exp", "speaker", "fold_1")
    os.makedirs(fold, exist_ok=True)
    overrides = dict(
        overrides,
        data_folder=os.path.join(root, "no_data"),
        output_root=os.path.join(root, "exp"),
    )
    path = os.path.join(HPARAMS, recipe)
    torch.manual_seed(0)
    with open(path, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    with open(path, encoding="utf-8") as handle:
        saved = resolve_references(
            handle, dict(overrides, manifest_folder=fold)
        ).getvalue()
    with open(os.path.join(fold, "hyperparams.yaml"), "w") as handle:
        handle.write(saved)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(LABELS)
    encoder.save(os.path.join(fold, "label_encoder.txt"))
    # non-trivial BatchNorm statistics, as a trained model has
    for module in hparams["embedding_model"].modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    Checkpointer(
        os.path.join(fold, "save"),
        recoverables={
            "embedding_model": hparams["embedding_model"],
            "classifier": hparams["classifier"],
        },
    ).save_checkpoint(meta={"UA": 50.0, "WA": 50.0, "epoch": 1})
    model_dir = os.path.join(root, "model")
    export_model(os.path.join(root, "exp"), model_dir)
    return model_dir


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
