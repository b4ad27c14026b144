"""Export a trained fold to a self-contained model folder.

``amser-sb export <experiment or fold folder> <model_dir>`` writes::

    model_dir/
      hyperparams.yaml       from hparams/inference.yaml, filled from the run
      embedding_model.ckpt   segment model (AM-ResNet, the pretrained
                             encoder's weights included, fusion)
      classifier.ckpt        linear layer
      label_encoder.txt      class names (and label_encoder.ckpt, the same
                             file under the name SpeechBrain's pretrainer
                             looks for)
      encoder/               the encoder's config.json and options.json
                             (for people and tools; hyperparams.yaml embeds
                             both as ssl_options)
      README.md              model card
      training.json          where it came from: run, fold, checkpoint, scores

The folder loads with SpeechBrain's plain ``EncoderClassifier.from_hparams``
offline, from anywhere: the encoder is rebuilt from its
``SpeechEncoder.export_options()`` (embedded in ``hyperparams.yaml``; the
training run saved them as ``<fold>/encoder.json``) and all weights come from
``embedding_model.ckpt``, so nothing is fetched from the Hub. An experiment
folder holding several folds exports the fold whose best checkpoint has the
highest validation UA (test scores never choose).

Authors
 * amser-sb contributors
"""

import glob
import json
import logging
import os
import re
import shutil
import sys

import yaml

logger = logging.getLogger(__name__)

#: The training run's encoder options, in its fold folder (written by
#: ``AMSERBrain`` from ``SpeechEncoder.export_options()``).
ENCODER_FILE = "encoder.json"

#: Training hparams copied into the inference template, when present.
COPIED_KEYS = (
    "sample_rate",
    "segment_seconds",
    "segment_hop_seconds",
    "use_voiced_mask",
    "madd_window",
    "madd_factor",
    "mode",
    "n_classes",
    "am_resnet_channels",
    "am_resnet_kernel",
    "am_resnet_strides",
    "use_mask",
    "use_attention",
    "fusion_dim",
    "fusion_heads",
    "fusion_ffn_dim",
    "fusion_dropout",
)

#: Training hparams described in the model card.
CARD_KEYS = (
    "experiment_name", "dataset", "protocol", "fold", "seed",
    "ssl_hub", "freeze_ssl", "number_of_epochs", "batch_size",
    "lr", "use_ambiguous", "target_type", "segment_seconds",
)


class ExportError(RuntimeError):
    """The experiment folder cannot be exported."""


class _TagIgnoringLoader(yaml.SafeLoader):
    """Reads a saved HyperPyYAML file as plain data (tags become None)."""


def _ignore_tag(loader, suffix, node):
    return None


_TagIgnoringLoader.add_multi_constructor("!", _ignore_tag)
_TagIgnoringLoader.add_multi_constructor("tag:", _ignore_tag)


def read_run_hparams(path):
    """Plain values of a training run's saved ``hyperparams.yaml``.

    Arguments
    ---------
    path : str
        ``<fold folder>/hyperparams.yaml`` (SpeechBrain saves it with the
        command-line overrides applied).

    Returns
    -------
    dict
        Top-level keys; objects built with ``!new:`` etc. read as None.
    """
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_TagIgnoringLoader)
    if not isinstance(data, dict):
        raise ExportError(f"{path} is not a hyperparameter file")
    return data


def find_template():
    """Locate the inference template ``hparams/inference.yaml``.

    Returns
    -------
    str
        Its path (source checkout, or installed under ``share/amser-sb``).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(os.path.dirname(here), "hparams", "inference.yaml"),
        os.path.join(sys.prefix, "share", "amser-sb", "hparams",
                     "inference.yaml"),
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ExportError(
        "cannot find the inference template hparams/inference.yaml "
        f"(looked in {', '.join(candidates)}); reinstall amser-sb"
    )


def _best_checkpoint(fold_folder):
    """``(checkpoint folder, meta)`` with the highest valid UA, or None."""
    from amser_sb.brain import find_best_checkpoint

    try:
        best = find_best_checkpoint(os.path.join(fold_folder, "save"))
    except FileNotFoundError:
        return None
    return str(best.path), dict(best.meta)


def find_best_fold(experiment):
    """The fold folder and checkpoint to export from an experiment folder.

    Arguments
    ---------
    experiment : str
        A fold folder (holding ``hyperparams.yaml`` and ``save/``) or any
        folder above several of them.

    Returns
    -------
    (str, str, dict)
        Fold folder, checkpoint folder, checkpoint meta (``UA``, ``WA``,
        ``epoch``).
    """
    if not os.path.isdir(experiment):
        raise ExportError(f"experiment folder {experiment} does not exist")
    folds = sorted(
        {
            os.path.dirname(save)
            for save in glob.glob(
                os.path.join(experiment, "**", "save"), recursive=True
            )
            if os.path.isfile(
                os.path.join(os.path.dirname(save), "hyperparams.yaml")
            )
        }
    )
    found = []
    for fold in folds:
        best = _best_checkpoint(fold)
        if best is not None:
            found.append((best[1]["UA"], fold, best[0], best[1]))
    if not found:
        raise ExportError(
            f"no checkpoint with a validation UA under {experiment}: train "
            "first (python train.py hparams/am_resnet_w2v2.yaml ...)"
        )
    found.sort(key=lambda item: (-float(item[0]), item[1]))
    _, fold, ckpt, meta = found[0]
    if len(found) > 1:
        logger.info(
            "%d folds under %s; exporting %s (best valid UA %.2f)",
            len(found), experiment, fold, float(meta["UA"]),
        )
    return fold, ckpt, meta


def encoder_options(fold, run):
    """How to rebuild the run's encoder offline (``export_options()``).

    Arguments
    ---------
    fold : str
        Fold folder; training saved ``encoder.json`` there.
    run : dict
        Plain training hparams (for runs without ``encoder.json``: the
        encoder is then loaded from ``ssl_hub`` to ask it).

    Returns
    -------
    dict
    """
    path = os.path.join(fold, ENCODER_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    from amser_sb.lobes import SSLBackbone

    hub = run.get("ssl_hub")
    kwargs = {"layer_weights": bool(run.get("ssl_layer_weights", False))}
    if run.get("ssl_window_seconds") is not None:
        kwargs["window_seconds"] = run["ssl_window_seconds"]
    try:
        encoder = SSLBackbone(
            hub, str(run.get("pretrained_folder") or "pretrained_models"),
            **kwargs,
        )
    except Exception as err:
        raise ExportError(
            f"{path} is missing and the encoder {hub!r} cannot be loaded to "
            f"describe it ({err}): export on the machine that trained it"
        ) from err
    return encoder.export_options()


def _set_top_level(text, key, value):
    """Replace a top-level key's value (its whole block) in YAML text."""
    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"^{re.escape(key)}:(\s|$)")
    for i, line in enumerate(lines):
        if pattern.match(line):
            end = i + 1
            # the block: following indented, non-blank lines
            while end < len(lines) and lines[end][:1] in (" ", "\t"):
                if not lines[end].strip():
                    break
                end += 1
            dumped = json.dumps(value) if value is not None else "null"
            lines[i:end] = [f"{key}: {dumped}\n"]
            return "".join(lines)
    raise ExportError(f"inference template has no top-level key {key!r}")


def render_inference_hparams(run, ssl_options, template=None):
    """Fill the inference template with a training run's values.

    Arguments
    ---------
    run : dict
        Plain training hparams (``read_run_hparams``).
    ssl_options : dict
        The encoder's ``export_options()`` (empty without an encoder).
    template : str, optional
        Template path (default ``find_template()``).

    Returns
    -------
    str
        The ``hyperparams.yaml`` text.
    """
    with open(template or find_template(), encoding="utf-8") as handle:
        text = handle.read()
    for key in COPIED_KEYS:
        if key in run:
            text = _set_top_level(text, key, run[key])
    text = _set_top_level(text, "ssl_options", ssl_options)
    mode = run.get("mode", "fusion")
    # Branches the mode does not use are not built (their weights are not
    # in the checkpoint either).
    if mode == "am_resnet":
        text = _set_top_level(text, "ssl", None)
    if mode in ("ssl", "wav2vec2"):
        text = _set_top_level(text, "am_resnet", None)
    if mode != "fusion":
        text = _set_top_level(text, "fusion", None)
    return text


def _results_table(fold_folder):
    """Markdown results of the run (CV table if present, else the fold)."""
    cv_results = os.path.join(os.path.dirname(fold_folder), "results.md")
    if os.path.isfile(cv_results):
        with open(cv_results, encoding="utf-8") as handle:
            return handle.read().strip()
    metrics = os.path.join(fold_folder, "test_metrics.json")
    if not os.path.isfile(metrics):
        return None
    with open(metrics, encoding="utf-8") as handle:
        m = json.load(handle)
    recall = " | ".join(f"{v:.2f}" for v in m.get("recall", {}).values())
    head = " | ".join(m.get("recall", {}))
    return (
        f"| WA | UA | macro-F1 | {head} |\n"
        f"|---|---|---|{'---|' * len(m.get('recall', {}))}\n"
        f"| {m['WA']:.2f} | {m['UA']:.2f} | {m['macro_F1']:.2f} | {recall} |"
        f"\n\nTest set of this fold ({m.get('n_utterances', '?')} "
        "utterances; recall per class in the last columns)."
    )


def write_model_card(model_dir, run, labels, provenance, results):
    """Write ``README.md``: what it is, classes, training, results, use.

    Arguments
    ---------
    model_dir : str
        Model folder.
    run : dict
        Plain training hparams.
    labels : list of str
        Class names in output order.
    provenance : dict
        ``training.json`` content.
    results : str or None
        Markdown results table.
    """
    rows = "\n".join(
        f"| `{key}` | `{run[key]}` |" for key in CARD_KEYS if key in run
    )
    hub = str(run.get("ssl_hub", ""))
    pretrained = not os.path.isdir(hub)
    backbone_note = (
        f"Pretrained encoder: `{hub}`."
        if pretrained
        else (
            "Pretrained encoder: a local folder "
            f"(`{os.path.basename(hub.rstrip('/'))}`); see training.json. "
            "**If it was randomly initialised (the offline demo), this "
            "model's numbers are not those of a pretrained encoder.**"
        )
    )
    text = f"""---
library_name: speechbrain
tags:
- speech-emotion-recognition
- audio-classification
- speechbrain
- wav2vec2
pipeline_tag: audio-classification
---

# amser-sb: AM-ResNet + wav2vec2 cross-feature fusion emotion recognition

Speech emotion recognition with the cross-feature fusion model of
X. Li and Z. Zhang, "Cross-feature fusion speech emotion recognition based on
attention mask residual network and Wav2vec 2.0", *Digital Communications
and Networks* 11(5):1567-1577, 2025, trained with
amser-sb (model mode `{run.get('mode', 'fusion')}`).

Classes (output order): {', '.join(f'`{lab}`' for lab in labels)}.
{backbone_note}

## Use

```python
from speechbrain.inference.classifiers import EncoderClassifier

clf = EncoderClassifier.from_hparams(source="<this folder or hub id>",
                                     savedir="pretrained_models/amser")
out_prob, score, index, label = clf.classify_file("speech.wav")
```

`out_prob` holds class probabilities. Any sample rate and channel count is
accepted (resampled to 16 kHz, channels averaged). Long recordings:
`amser-sb classify --model <folder> --window 4 --hop 2 long.wav` prints
per-window emotions with timestamps.

## Training

| hparam | value |
|---|---|
{rows}

Checkpoint: epoch {provenance.get('epoch')}, selected by validation UA
({provenance.get('valid_UA')}); the test data never chose it.

## Results

{results or 'No test results were found next to the checkpoint.'}
"""
    with open(os.path.join(model_dir, "README.md"), "w",
              encoding="utf-8") as handle:
        handle.write(text)


def export_model(experiment, model_dir):
    """Export the best checkpoint of an experiment to a model folder.

    Arguments
    ---------
    experiment : str
        Fold folder or a folder above several folds.
    model_dir : str
        Folder to write (created; existing model files are replaced).

    Returns
    -------
    str
        ``model_dir``.
    """
    fold, ckpt, meta = find_best_fold(experiment)
    hparams_path = os.path.join(fold, "hyperparams.yaml")
    run = read_run_hparams(hparams_path)
    hub = run.get("ssl_hub")
    mode = run.get("mode", "fusion")
    label_file = os.path.join(str(run.get("manifest_folder", "")),
                              "label_encoder.txt")
    if not os.path.isfile(label_file):
        label_file = os.path.join(fold, "label_encoder.txt")
    if not os.path.isfile(label_file):
        raise ExportError(
            f"no label_encoder.txt for {fold} (looked in the run's "
            "manifest_folder and the fold folder): re-run the data "
            "preparation"
        )
    for name in ("embedding_model.ckpt", "classifier.ckpt"):
        if not os.path.isfile(os.path.join(ckpt, name)):
            raise ExportError(f"checkpoint {ckpt} has no {name}")

    options = {}
    if mode != "am_resnet":
        options = encoder_options(fold, run)
    text = render_inference_hparams(run, options)

    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "hyperparams.yaml"), "w",
              encoding="utf-8") as handle:
        handle.write(text)
    for name in ("embedding_model.ckpt", "classifier.ckpt"):
        shutil.copyfile(os.path.join(ckpt, name),
                        os.path.join(model_dir, name))
    shutil.copyfile(label_file, os.path.join(model_dir, "label_encoder.txt"))
    shutil.copyfile(label_file, os.path.join(model_dir, "label_encoder.ckpt"))
    if mode != "am_resnet":
        ssl_dir = os.path.join(model_dir, "encoder")
        os.makedirs(ssl_dir, exist_ok=True)
        with open(os.path.join(ssl_dir, "config.json"), "w") as handle:
            json.dump(options.get("config", {}), handle, indent=2,
                      sort_keys=True)
        with open(os.path.join(ssl_dir, "options.json"), "w") as handle:
            json.dump({k: v for k, v in options.items() if k != "config"},
                      handle, indent=2, sort_keys=True)

    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.load(label_file)
    labels = [encoder.ind2lab[i] for i in range(len(encoder.ind2lab))]
    provenance = {
        "fold_folder": os.path.abspath(fold),
        "checkpoint": os.path.basename(ckpt),
        "epoch": meta.get("epoch"),
        "valid_UA": meta.get("UA"),
        "valid_WA": meta.get("WA"),
        "mode": mode,
        "ssl_hub": hub,
        "encoder_model_type": options.get("config", {}).get("model_type"),
        "labels": labels,
    }
    with open(os.path.join(model_dir, "training.json"), "w") as handle:
        json.dump(provenance, handle, indent=2)
    write_model_card(model_dir, run, labels, provenance,
                     _results_table(fold))
    logger.info("exported %s (epoch %s, valid UA %s) to %s", ckpt,
                meta.get("epoch"), meta.get("UA"), model_dir)
    return model_dir
