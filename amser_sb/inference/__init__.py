"""Inference and publishing: exported model folders and what uses them.

``run_folder`` (reading a finished run: best checkpoint, saved hparams),
``export`` (a run to a model folder that ``EncoderClassifier.from_hparams``
loads; template ``inference.yaml``; ``model_card``), ``classify`` (files and long audio),
``precision`` (int8 / bf16), ``hub`` and ``hub_offline`` (Hub upload and
offline loading). Imports ``core``, ``lobes`` and ``config.yaml_trust``
only: loading and classifying never imports training or data preparation.

Authors
 * amser-sb contributors
"""
