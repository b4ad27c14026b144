"""The model card (``README.md``) of an exported model folder.

What the model is, its classes, how it was trained (the run's hparams of
:data:`CARD_KEYS`), the checkpoint that was chosen and why, its test
results, and how to load it with SpeechBrain's ``EncoderClassifier``.
:func:`amser_sb.inference.export.export_model` writes it; the ONNX export
adds a section (:mod:`amser_sb.inference.onnx_export`).

Authors
 * amser-sb contributors
"""

import json
import os

#: Training hparams described in the model card.
CARD_KEYS = (
    "experiment_name", "dataset", "protocol", "fold", "seed",
    "ssl_hub", "freeze_ssl", "number_of_epochs", "batch_size",
    "lr", "use_ambiguous", "target_type", "segment_seconds",
)



def results_table(fold_folder):
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
    recall = m.get("recall") or {}
    cells = [score_cell(m.get(key)) for key in ("WA", "UA", "macro_F1")]
    cells += [score_cell(value) for value in recall.values()]
    absent = [label for label, value in recall.items() if value is None]
    note = (f"; — : no {', '.join(absent)} utterance in this fold's test "
            "set" if absent else "")
    return (
        f"| WA | UA | macro-F1 | {' | '.join(recall)} |\n"
        f"|---|---|---|{'---|' * len(recall)}\n"
        f"| {' | '.join(cells)} |"
        f"\n\nTest set of this fold ({m.get('n_utterances', '?')} "
        f"utterances; recall per class in the last columns{note})."
    )


def score_cell(value):
    """A score for a Markdown table: ``—`` when there is none (a class
    absent from the test set has no recall).

    Example
    -------
    >>> score_cell(61.234), score_cell(None), score_cell(float("nan"))
    ('61.23', '—', '—')
    """
    if value is None or value != value:
        return "—"
    return f"{float(value):.2f}"


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
amser-sb (model mode `{run.get('mode')}`).

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
