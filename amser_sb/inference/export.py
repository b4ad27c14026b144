"""Export a trained fold to a self-contained model folder.

``amser-sb export <experiment or fold folder> <model_dir>`` writes::

    model_dir/
      hyperparams.yaml       amser_sb/inference/inference.yaml, its !PLACEHOLDERs
                             filled from the run's saved hyperparams.yaml
      embedding_model.ckpt   segment model (AM-ResNet, the pretrained
                             encoder's weights included, fusion)
      classifier.ckpt        linear layer
      label_encoder.txt      class names (and label_encoder.ckpt, the same
                             file under the name SpeechBrain's pretrainer
                             looks for)
      encoder/               the encoder's config.json and options.json
                             (for people and tools; hyperparams.yaml embeds
                             both)
      README.md              model card
      training.json          where it came from: run, fold, checkpoint, scores

The model is declared once, in the recipe's YAML: the export copies the
run's ``embedding_model`` and ``classifier`` declarations (overrides
included, as SpeechBrain saved them) into the inference hyperparams, so
any mode and any fusion class comes back as trained. The folder loads with
SpeechBrain's plain ``EncoderClassifier.from_hparams`` offline, from
anywhere: the encoder is rebuilt from its ``SpeechEncoder.export_options()``
(embedded in ``hyperparams.yaml``; the training run saved them as
``<fold>/encoder.json``) and all weights come from ``embedding_model.ckpt``,
so nothing is fetched from the Hub. SpeechBrain's pretrainer loads weights
with ``strict=False``, so the export loads the folder it wrote and fails
unless every parameter and buffer equals the trained one
(:func:`check_export`). An experiment folder holding several folds exports
the fold whose best checkpoint has the highest validation UA (test scores
never choose).

Authors
 * amser-sb contributors
"""

import io
import json
import logging
import os
import shutil
import tempfile

import torch

from amser_sb.inference.model_card import results_table, write_model_card
from amser_sb.inference.run_folder import (
    RunFolderError,
    find_best_fold,
    read_run_hparams,
)

logger = logging.getLogger(__name__)

#: The training run's encoder options, in its fold folder (written by
#: ``AMSERBrain`` from ``SpeechEncoder.export_options()``).
ENCODER_FILE = "encoder.json"

#: The tag of a template value that the export fills with the training
#: run's value of the same key (``amser_sb/inference/inference.yaml``).
PLACEHOLDER_TAG = "!PLACEHOLDER"

#: How exported hparams rebuild the encoder branch offline: from its
#: ``export_options()`` (instead of the run's download from ``ssl_hub``).
ENCODER_BUILDER_TAG = "!apply:amser_sb.lobes.encoder_from_options"

class ExportError(RunFolderError):
    """The experiment folder cannot be exported."""


def encoder_options(fold, node, allow_any_yaml=False):
    """How to rebuild the run's encoder offline (``export_options()``).

    Arguments
    ---------
    fold : str
        Fold folder; training saved ``encoder.json`` there.
    node : ruamel.yaml.comments.CommentedMap
        The run's declared encoder branch (:func:`encoder_node`). Used only
        for runs without ``encoder.json``: that declaration, exactly as the
        run's ``hyperparams.yaml`` holds it, is built (which loads the
        encoder from its source) and asked.
    allow_any_yaml : bool
        Build that declaration even if it names code outside the allowed
        list of :mod:`amser_sb.config.yaml_trust`.

    Returns
    -------
    dict
    """
    path = os.path.join(fold, ENCODER_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    from hyperpyyaml import load_hyperpyyaml

    from amser_sb.config.yaml_trust import check_hyperparams_text

    out = io.StringIO()
    _round_trip_yaml().dump({"ssl": node}, out)
    check_hyperparams_text(
        out.getvalue(), f"the encoder declaration (ssl) of "
        f"{os.path.join(fold, 'hyperparams.yaml')}", allow_any_yaml,
    )
    try:
        encoder = load_hyperpyyaml(out.getvalue())["ssl"]
    except Exception as err:
        raise ExportError(
            f"{path} is missing and the run's encoder cannot be built to "
            f"describe it ({' '.join(str(err).split())}): export on the "
            "machine that trained it"
        ) from err
    return encoder.export_options()


#: The inference template, package data next to this module.
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "inference.yaml")


def _round_trip_yaml():
    """A ruamel round-trip loader/dumper: keeps tags, anchors, comments."""
    from ruamel.yaml import YAML

    loader = YAML()
    loader.width = 4096  # never fold long values (encoder configs)
    return loader


def _is_placeholder(value):
    tag = getattr(value, "tag", None)
    return getattr(tag, "value", None) == PLACEHOLDER_TAG


def _strip_comments(node, seen=None):
    """Drop the comments ruamel attached to a copied run node (they would
    land on other keys of the inference file)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    seen = set() if seen is None else seen
    if id(node) in seen or not isinstance(node, (CommentedMap, CommentedSeq)):
        return
    seen.add(id(node))
    node.ca.items.clear()
    node.ca.comment = None
    node.ca.end = []
    for child in node.values() if isinstance(node, dict) else node:
        _strip_comments(child, seen)


def model_declaration(run_file):
    """The model of a training run, as declared in its saved hyperparams.

    Arguments
    ---------
    run_file : str
        ``<fold folder>/hyperparams.yaml``: the recipe's YAML with the run's
        overrides, references resolved (what SpeechBrain saves).

    Returns
    -------
    ruamel.yaml.comments.CommentedMap
        The whole file as a tree (objects keep their ``!new:`` tags; shared
        objects are YAML anchors), nothing built.
    """
    try:
        with open(run_file, encoding="utf-8") as handle:
            tree = _round_trip_yaml().load(handle)
    except Exception as err:  # ruamel raises several types
        raise ExportError(
            f"cannot read {run_file} ({' '.join(str(err).split())}); "
            "it is the training run's hyperparameter file, re-run training"
        ) from err
    if not isinstance(tree, dict):
        raise ExportError(f"{run_file} is not a hyperparameter file")
    return tree


def encoder_node(embedding_model):
    """The encoder branch (``ssl`` argument) of a declared AMSER, or None.

    Arguments
    ---------
    embedding_model : ruamel.yaml.comments.CommentedMap or None
        The run's ``embedding_model`` node.

    Returns
    -------
    ruamel.yaml.comments.CommentedMap or None
    """
    if not isinstance(embedding_model, dict):
        return None
    node = embedding_model.get("ssl")
    return node if isinstance(node, dict) else None


def render_inference_hparams(run_file, ssl_options=None, template=None):
    """The inference hyperparams of a training run.

    Every ``!PLACEHOLDER`` of the template (``amser_sb/inference/inference.yaml``)
    becomes the training run's value of the same key: the architecture
    (``embedding_model``, ``classifier``) exactly as the run declared it,
    overrides included, and the values the inference wrapper needs
    (``sample_rate``, the segment grid, MADD options, ``n_classes``). Two
    changes, both without parameters: the encoder branch is rebuilt from
    ``ssl_options`` (``encoder_from_options``, no download) and an
    ``EmotionClassifier`` outputs probabilities (and takes its
    ``n_classes`` from the top-level key, so the file holds one).

    Arguments
    ---------
    run_file : str
        The training run's saved ``hyperparams.yaml``.
    ssl_options : dict, optional
        The encoder's ``export_options()``; required when the model has an
        encoder branch.
    template : str, optional
        Template path (default :data:`TEMPLATE`).

    Returns
    -------
    str
        The ``hyperparams.yaml`` text.
    """
    from ruamel.yaml.comments import Tag, TaggedScalar

    run = model_declaration(run_file)
    loader = _round_trip_yaml()
    with open(template or TEMPLATE, encoding="utf-8") as handle:
        doc = loader.load(handle)
    missing = []
    for key in list(doc):
        if not _is_placeholder(doc[key]):
            continue
        if key not in run:
            missing.append(key)
            continue
        _strip_comments(run[key])
        doc[key] = run[key]
    if missing:
        raise ExportError(
            f"{run_file} has no {', '.join(missing)}: the inference template "
            "needs them; export a run of the recipe's hparams files"
        )
    encoder = encoder_node(doc["embedding_model"])
    if encoder is not None:
        if not ssl_options:
            raise ExportError(
                f"the model of {run_file} has an encoder branch but no "
                f"export options were given ({ENCODER_FILE})"
            )
        encoder.clear()  # in place: every reference to it follows
        encoder.yaml_set_ctag(Tag(suffix=ENCODER_BUILDER_TAG))
        encoder["options"] = dict(ssl_options)
    classifier = doc["classifier"]
    tag = getattr(getattr(classifier, "tag", None), "value", None) or ""
    if isinstance(classifier, dict) and tag.endswith("EmotionClassifier"):
        classifier["output"] = "prob"
        if classifier.get("n_classes") == doc["n_classes"]:
            classifier["n_classes"] = TaggedScalar("<n_classes>", tag="!ref")
    out = io.StringIO()
    loader.dump(doc, out)
    return out.getvalue()


def _state_problems(key, trained, loaded):
    """What differs between a trained and a loaded state dict."""
    lost = sorted(set(trained) - set(loaded))
    untrained = sorted(set(loaded) - set(trained))
    changed = sorted(
        name
        for name in set(trained) & set(loaded)
        if not (
            trained[name].shape == loaded[name].shape
            and trained[name].dtype == loaded[name].dtype
            and torch.equal(trained[name], loaded[name].cpu())
        )
    )
    problems = []
    for what, names in (
        ("trained but not in the exported model", lost),
        ("in the exported model but never trained (random)", untrained),
        ("different from the trained values", changed),
    ):
        if names:
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            problems.append(f"{key}: {len(names)} {what} ({shown})")
    return problems


def check_export(model_dir, checkpoint):
    """Load an exported folder and compare it with the trained weights.

    SpeechBrain's pretrainer loads with ``strict=False``: a module that the
    inference hyperparams build differently from training comes back with
    random weights and only a warning. This loads ``model_dir`` with
    SpeechBrain's plain ``EncoderClassifier.from_hparams`` (offline) and
    requires every parameter and buffer of each pretrainer loadable to
    equal the checkpoint's (same names, shapes, dtypes and values).

    Arguments
    ---------
    model_dir : str
        The exported folder.
    checkpoint : str
        The training checkpoint folder it came from (``<key>.ckpt`` files).

    Raises
    ------
    ExportError
        Naming every lost, untrained or changed tensor.
    """
    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.utils.fetching import FetchConfig

    from amser_sb.inference.hub_offline import hub_offline

    with tempfile.TemporaryDirectory() as savedir, hub_offline(True):
        clf = EncoderClassifier.from_hparams(
            source=os.path.abspath(model_dir),
            savedir=savedir,
            run_opts={"device": "cpu"},
            fetch_config=FetchConfig(overwrite=True),
        )
    problems = []
    for key, obj in clf.hparams.pretrainer.loadables.items():
        if not isinstance(obj, torch.nn.Module):
            continue
        trained = torch.load(
            os.path.join(checkpoint, f"{key}.ckpt"), map_location="cpu",
            weights_only=True,
        )
        problems += _state_problems(key, trained, obj.state_dict())
    if problems:
        raise ExportError(
            f"the exported model {model_dir} does not reproduce the trained "
            f"model of {checkpoint}: " + "; ".join(problems) + ". The "
            "inference hyperparams build a module differently from "
            "training; this export is unusable (report it as a bug)"
        )


def _label_encoder(run, fold):
    """The run's label encoder, loaded (SpeechBrain's format)."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    candidates = [
        os.path.join(str(run.get("manifest_folder", "")), "label_encoder.txt"),
        os.path.join(fold, "label_encoder.txt"),
    ]
    path = next((c for c in candidates if os.path.isfile(c)), None)
    if path is None:
        raise ExportError(
            f"no label_encoder.txt for {fold} (looked in the run's "
            "manifest_folder and the fold folder): re-run the data "
            "preparation"
        )
    encoder = CategoricalEncoder()
    encoder.load(path)
    if len(encoder) == 0:
        raise ExportError(f"{path} holds no classes: re-run the data "
                          "preparation")
    return encoder


def _write_encoder_files(folder, options):
    """``encoder/config.json`` and ``encoder/options.json`` (for people and
    tools; the hyperparams embed both)."""
    ssl_dir = os.path.join(folder, "encoder")
    os.makedirs(ssl_dir, exist_ok=True)
    with open(os.path.join(ssl_dir, "config.json"), "w") as handle:
        json.dump(options.get("config", {}), handle, indent=2, sort_keys=True)
    with open(os.path.join(ssl_dir, "options.json"), "w") as handle:
        json.dump({k: v for k, v in options.items() if k != "config"},
                  handle, indent=2, sort_keys=True)


#: What an export writes into a model folder (the only names it replaces).
EXPORT_FILES = (
    "hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt",
    "label_encoder.txt", "label_encoder.ckpt", "encoder", "README.md",
    "training.json",
)


def _is_previous_export(model_dir):
    """Whether ``model_dir`` holds an earlier export (its training.json)."""
    try:
        with open(os.path.join(model_dir, "training.json"),
                  encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "fold_folder" in info \
        and "checkpoint" in info


def check_target_folder(model_dir):
    """Refuse a target folder holding files an export did not write.

    ``model_dir`` may be missing, empty, or an earlier export (then only
    the export's own files, :data:`EXPORT_FILES`, are replaced and every
    other file is kept).

    Arguments
    ---------
    model_dir : str
        The folder ``amser-sb export`` was asked to write.

    Returns
    -------
    list of str
        Entries of an earlier export that are kept (not the export's).

    Raises
    ------
    ExportError
        ``model_dir`` is a file, or a non-empty folder that no export
        wrote; naming what is there and the fix.
    """
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ExportError(
            f"{model_dir} is a file; give a new folder to export into")
    present = sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) \
        else []
    others = [name for name in present if name not in EXPORT_FILES]
    if present and not _is_previous_export(model_dir):
        shown = ", ".join(present[:5]) + (" ..." if len(present) > 5 else "")
        raise ExportError(
            f"{model_dir} already holds files that amser-sb export did not "
            f"write ({shown}); nothing was changed: export into a new or "
            "empty folder"
        )
    return others


def export_model(experiment, model_dir, allow_any_yaml=False):
    """Export the best checkpoint of an experiment to a model folder.

    The folder is written next to ``model_dir`` first, loaded with
    SpeechBrain's plain ``EncoderClassifier`` and checked against the
    checkpoint (:func:`check_export`); only a folder that reproduces every
    trained parameter and buffer is moved into ``model_dir``. ``model_dir``
    must be new, empty or an earlier export (:func:`check_target_folder`:
    nothing the export did not write is ever replaced).

    Arguments
    ---------
    experiment : str
        Fold folder or a folder above several folds.
    model_dir : str
        Folder to write (created; an earlier export's files are replaced).
    allow_any_yaml : bool
        Export (and load, for the check) even a model whose hyperparams
        name code outside the allowed list of
        :mod:`amser_sb.config.yaml_trust`.

    Returns
    -------
    str
        ``model_dir``.
    """
    from amser_sb.config.yaml_trust import check_hyperparams_text

    kept = check_target_folder(model_dir)
    fold, ckpt, meta = find_best_fold(experiment)
    hparams_path = os.path.join(fold, "hyperparams.yaml")
    run = read_run_hparams(hparams_path)
    hub = run.get("ssl_hub")
    mode = run.get("mode")
    for name in ("embedding_model.ckpt", "classifier.ckpt"):
        if not os.path.isfile(os.path.join(ckpt, name)):
            raise ExportError(f"checkpoint {ckpt} has no {name}")
    labels_encoder = _label_encoder(run, fold)
    declared = model_declaration(hparams_path)
    options = {}
    node = encoder_node(declared.get("embedding_model"))
    if node is not None:
        options = encoder_options(fold, node, allow_any_yaml)
    text = render_inference_hparams(hparams_path, options)
    # check_export loads the folder: the same guard as every loader
    check_hyperparams_text(
        text, f"the model folder hyperparams made from {hparams_path}",
        allow_any_yaml,
    )

    parent = os.path.dirname(os.path.abspath(model_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        with open(os.path.join(staging, "hyperparams.yaml"), "w",
                  encoding="utf-8") as handle:
            handle.write(text)
        for name in ("embedding_model.ckpt", "classifier.ckpt"):
            shutil.copyfile(os.path.join(ckpt, name),
                            os.path.join(staging, name))
        for name in ("label_encoder.txt", "label_encoder.ckpt"):
            labels_encoder.save(os.path.join(staging, name))
        if options:
            _write_encoder_files(staging, options)
        labels = [labels_encoder.ind2lab[i]
                  for i in range(len(labels_encoder))]
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
        with open(os.path.join(staging, "training.json"), "w") as handle:
            json.dump(provenance, handle, indent=2)
        write_model_card(staging, run, labels, provenance,
                         results_table(fold))
        check_export(staging, ckpt)
        check_target_folder(model_dir)  # nothing new appeared meanwhile
        os.makedirs(model_dir, exist_ok=True)
        for name in os.listdir(staging):
            target = os.path.join(model_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s (epoch %s, valid UA %s) to %s; every trained "
                "parameter and buffer checked", ckpt, meta.get("epoch"),
                meta.get("UA"), model_dir)
    if kept:
        logger.info("%s: replaced the files of the earlier export only; "
                    "kept %s", model_dir, ", ".join(kept))
    return model_dir
