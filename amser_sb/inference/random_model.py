"""A model folder with random weights, exported as a trained one would be.

For benchmarks and tests that need the recipe's model as users get it
(``amser-sb export``'s folder) but not its accuracy: the recipe's
hyperparameters with overrides, saved as one fold of a run (the resolved
``hyperparams.yaml``, ``label_encoder.txt`` and a checkpoint), then
exported with :func:`amser_sb.inference.export.export_model`.

Authors
 * amser-sb contributors
"""

import os

import torch


def random_model_folder(recipe, overrides, exp_folder, model_dir, labels,
                        seed=0, trained_batchnorm=False):
    """Write a fold of ``recipe`` with random weights and export it.

    Arguments
    ---------
    recipe : str
        The recipe's hparams file (e.g. ``hparams/am_resnet_w2v2.yaml``).
    overrides : dict
        Its overrides (``ssl_hub``, sizes, folders, ...);
        ``data_folder`` and ``output_root`` are set here.
    exp_folder : str
        The run's folder (the fold goes to ``<exp_folder>/speaker/fold_1``).
    model_dir : str
        The exported model folder.
    labels : sequence of str
        The classes, in label-encoder order.
    seed : int
        Seed of the random weights.
    trained_batchnorm : bool
        Give BatchNorm layers running statistics other than 0 and 1, as a
        trained model has (so that a check sees them).

    Returns
    -------
    str
        ``model_dir``.

    Example
    -------
    >>> folder = random_model_folder(  # doctest: +SKIP
    ...     "recipes/IEMOCAP/emotion_recognition/hparams/am_resnet.yaml",
    ...     {"am_resnet_channels": 8}, "exp", "model", ["neu", "ang"])
    """
    from hyperpyyaml import load_hyperpyyaml, resolve_references
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.utils.checkpoints import Checkpointer

    from amser_sb.inference.export import export_model

    fold = os.path.join(exp_folder, "speaker", "fold_1")
    os.makedirs(fold, exist_ok=True)
    overrides = dict(
        overrides,
        data_folder=os.path.join(exp_folder, "no_data"),
        output_root=exp_folder,
    )
    torch.manual_seed(seed)
    with open(recipe, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    # what SpeechBrain saves as <fold>/hyperparams.yaml: the recipe with the
    # overrides, references resolved (the export reads the model there)
    with open(recipe, encoding="utf-8") as handle:
        saved = resolve_references(
            handle, dict(overrides, manifest_folder=fold)
        ).getvalue()
    with open(os.path.join(fold, "hyperparams.yaml"), "w",
              encoding="utf-8") as handle:
        handle.write(saved)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(labels)
    encoder.save(os.path.join(fold, "label_encoder.txt"))
    if trained_batchnorm:
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
    export_model(exp_folder, model_dir)
    return model_dir
