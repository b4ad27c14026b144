"""Data pipeline: manifests -> segments of audio, voiced masks, soft targets.

The model sees fixed-length segments of the 16 kHz waveform (4 s in the
paper). How an utterance becomes segments:

- **grid**: an utterance of ``N`` samples and a segment length ``L`` (hop
  ``H``, default ``L``) is covered by segments starting at ``0, H, 2H, ...``
  while ``start + L < N``, plus one last segment ending exactly at ``N``
  (so it may overlap the one before and is never padded). An utterance no
  longer than ``L`` is one segment, the whole utterance; it is zero-padded
  to the batch's longest item by SpeechBrain's ``PaddedBatch``, and the
  relative length ``wav_lens`` and the voiced mask mark the padding (0).
  ``segment_seconds: null`` uses whole utterances.
- **training** (``train_segments``): ``"random"`` (default) yields one item
  per utterance per epoch, a segment drawn uniformly from its grid each
  time the item is loaded (so long utterances show all their parts across
  epochs without dominating an epoch); ``"all"`` yields one item per grid
  segment. Drawing from the fixed grid, rather than at any offset, keeps
  the frozen-backbone feature cache finite.
- **evaluation** (valid and test): one item per grid segment; the Brain
  takes the softmax of the segments' mean log-probability per utterance and
  predicts the arg-max (:class:`amser_sb.core.metrics.ClassificationStats`).

Every item provides ``sig`` (``[time]`` float waveform), ``mask`` (the
``voiced`` column's MADD intervals cut to the segment, ``[time]`` 0/1),
``soft_target`` (``[n_classes]`` in label-encoder order, from the
``soft_<label>`` columns), ``emo_encoded`` (class index, -1 for ambiguous
rows), ``utt_id``, ``wav``, ``seg_start`` and ``seg_stop`` (samples).

Validation and test score clear utterances only (ambiguous ones have no
reference class); the ambiguous rows they hold are dropped with a logged
count. Training keeps ambiguous rows when ``use_ambiguous`` is true.

Authors
 * amser-sb contributors 2026
"""

import csv
import logging
import os

import speechbrain as sb
import torch

from amser_sb.core.audio import audio_info, read_segment
from amser_sb.core.segments import segment_bounds
from amser_sb.core.madd import intervals_to_mask, parse_intervals
from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

__all__ = [
    "ManifestError",
    "segment_bounds",
    "voiced_mask",
    "read_manifest",
    "segment_options",
    "build_segment_dataset",
    "load_label_encoder",
    "check_held_out",
    "dataio_prep",
    "loader_options",
]

#: Columns every manifest must have.
REQUIRED_COLUMNS = ("ID", "wav", "emo", "ambiguous")


class ManifestError(AmserUserError, ValueError):
    """A manifest that does not have the expected schema."""


def voiced_mask(voiced, start, length):
    """The voiced (MADD-kept) mask of one segment.

    Arguments
    ---------
    voiced : str or list of (int, int)
        The manifest's ``voiced`` intervals of the whole utterance
        (``"s:e s:e"``, end exclusive, samples), or parsed intervals.
    start : int
        Segment start, samples.
    length : int
        Segment length, samples.

    Returns
    -------
    torch.Tensor
        ``[length]`` float 0/1 mask.

    Example
    -------
    >>> voiced_mask("2:5 7:20", 4, 6)
    tensor([1., 0., 0., 1., 1., 1.])
    """
    if isinstance(voiced, str):
        voiced = parse_intervals(voiced)
    return intervals_to_mask(voiced, length, start=start)


def _is_true(value):
    """Manifest boolean: '1', 'true', 'yes' (any case) are true."""
    return str(value).strip().lower() in ("1", "true", "yes", "1.0")


def read_manifest(csv_path, labels, replacements=None):
    """Reads and checks a manifest written by the data preparation.

    The rows come from SpeechBrain's ``DynamicItemDataset.from_csv``
    (which also substitutes ``$data_root`` and the like).

    Arguments
    ---------
    csv_path : str
        Manifest (``ID, duration, wav, spk_id, group, emo, soft_<label>...,
        ambiguous, voiced``).
    labels : list of str
        Class labels in encoder order; ``soft_<label>`` columns must exist.
    replacements : dict, optional
        ``{"data_root": "/data"}`` replaces ``$data_root`` in the values.

    Returns
    -------
    list of dict
        One row per utterance, ``soft`` holding the target list.

    Raises
    ------
    ManifestError
        Naming the file and the missing columns or bad values.
    """
    if not os.path.isfile(csv_path):
        raise ManifestError(
            f"manifest {csv_path} does not exist; run the data preparation "
            "(prepare_iemocap) first or check save_folder/protocol/fold."
        )
    with open(csv_path, newline="") as handle:
        columns = next(csv.reader(handle), [])
    wanted = list(REQUIRED_COLUMNS) + [f"soft_{lab}" for lab in labels]
    missing = [col for col in wanted if col not in columns]
    if missing:
        raise ManifestError(
            f"manifest {csv_path} lacks columns {missing} (has "
            f"{columns}); re-run the data preparation."
        )
    try:
        manifest = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path, replacements=dict(replacements or {})
        )
    except (KeyError, ValueError) as err:
        raise ManifestError(
            f"manifest {csv_path} cannot be read ({err}); re-run the data "
            "preparation."
        ) from err
    rows = []
    for line, utt_id in enumerate(manifest.data_ids, start=2):
        row = manifest.data[utt_id]
        try:
            soft = [float(row[f"soft_{lab}"]) for lab in labels]
        except ValueError as err:
            raise ManifestError(
                f"{csv_path}, line {line} ({utt_id}): bad soft target: {err}"
            ) from err
        ambiguous = _is_true(row["ambiguous"])
        emo = row["emo"].strip()
        if not ambiguous and emo not in labels:
            raise ManifestError(
                f"{csv_path}, line {line} ({utt_id}): label {emo!r} "
                f"is not one of {labels} (label_encoder.txt); re-run "
                "the data preparation."
            )
        rows.append(
            {
                "ID": utt_id,
                "wav": row["wav"],
                "emo": emo,
                "ambiguous": ambiguous,
                "soft": soft,
                "voiced": row.get("voiced"),
            }
        )
    return rows


def segment_options(hparams):
    """:func:`build_segment_dataset`'s options from the recipe hparams.

    Arguments
    ---------
    hparams : dict
        Recipe hparams (``segment_seconds``, ``segment_hop_seconds``,
        ``train_segments``, ``use_ambiguous``, ``target_type``,
        ``use_voiced_mask``, ``sample_rate``).

    Returns
    -------
    dict
        Keyword arguments of :func:`build_segment_dataset`.

    Example
    -------
    >>> hparams = {"segment_seconds": 4.0, "segment_hop_seconds": None,
    ...            "train_segments": "random", "use_ambiguous": True,
    ...            "target_type": "soft", "use_voiced_mask": True,
    ...            "sample_rate": 16000}
    >>> segment_options(hparams)["hop_seconds"] is None
    True
    """
    return {
        "segment_seconds": hparams["segment_seconds"],
        "hop_seconds": hparams["segment_hop_seconds"],
        "train_segments": hparams["train_segments"],
        "use_ambiguous": hparams["use_ambiguous"],
        "target_type": hparams["target_type"],
        "use_voiced_mask": hparams["use_voiced_mask"],
        "sample_rate": hparams["sample_rate"],
    }


def build_segment_dataset(
    csv_path,
    labels,
    stage,
    *,
    segment_seconds,
    hop_seconds,
    train_segments,
    use_ambiguous,
    target_type,
    use_voiced_mask,
    sample_rate,
    replacements=None,
):
    """Builds the segment-level ``DynamicItemDataset`` of one manifest.

    Every option comes from the recipe's YAML (:func:`segment_options`).

    Arguments
    ---------
    csv_path : str
        Manifest written by the data preparation.
    labels : list of str
        Class labels in label-encoder order.
    stage : str
        ``"train"``, ``"valid"`` or ``"test"``; evaluation stages keep clear
        rows only and use every grid segment.
    segment_seconds : float or None
        Segment length (paper: 4 s); ``None`` or 0 for whole utterances.
    hop_seconds : float or None
        Hop between grid segments; None: ``segment_seconds``.
    train_segments : str
        ``"random"`` (one random grid segment per utterance per epoch) or
        ``"all"`` (every grid segment); training only.
    use_ambiguous : bool
        Keep ambiguous rows (soft targets only) for training.
    target_type : str
        ``"soft"``: the vote proportions for every row; ``"hard"``: one-hot
        of ``emo`` for clear rows (ambiguous rows keep their proportions).
    use_voiced_mask : bool
        Use the ``voiced`` intervals; when false (or the column is absent)
        the mask is all ones over the real samples.
    sample_rate : int
        Sample rate of the corpus; other rates raise
        :class:`amser_sb.core.audio.AudioError`.
    replacements : dict, optional
        ``$key`` substitutions in the ``wav`` column.

    Returns
    -------
    sb.dataio.dataset.DynamicItemDataset
        Items with ``id, utt_id, wav, seg_start, seg_stop, sig, mask,
        soft_target, emo_encoded``.
    """
    if stage not in ("train", "valid", "test"):
        raise ValueError(f"stage must be train/valid/test, got {stage!r}")
    if train_segments not in ("random", "all"):
        raise ValueError(
            f"train_segments must be 'random' or 'all', got {train_segments!r}"
        )
    if target_type not in ("soft", "hard"):
        raise ValueError(
            f"target_type must be 'soft' or 'hard', got {target_type!r}"
        )
    rows = read_manifest(csv_path, labels, replacements)
    keep_ambiguous = stage == "train" and use_ambiguous
    dropped = sum(1 for row in rows if row["ambiguous"] and not keep_ambiguous)
    if dropped:
        reason = "use_ambiguous is False" if stage == "train" else (
            "no reference class to score"
        )
        logger.info(
            "%s: leaving out %d ambiguous of %d utterances (%s)",
            csv_path, dropped, len(rows), reason,
        )
    segment = 0
    if segment_seconds:
        segment = int(round(segment_seconds * sample_rate))
    hop = int(round(hop_seconds * sample_rate)) if hop_seconds else None
    per_utterance = stage == "train" and train_segments == "random"

    data = {}
    for row in rows:
        if row["ambiguous"] and not keep_ambiguous:
            continue
        num_samples = audio_info(row["wav"], sample_rate).frames
        bounds = segment_bounds(num_samples, segment, hop)
        soft = list(row["soft"])
        if target_type == "hard" and not row["ambiguous"]:
            soft = [float(lab == row["emo"]) for lab in labels]
        if stage == "train" and sum(soft) <= 0:
            raise ManifestError(
                f"{csv_path} ({row['ID']}): every soft_<label> target is "
                "0; re-run the data preparation or use target_type: hard."
            )
        item = {
            "utt_id": row["ID"],
            # longest segment, seconds (for dynamic batching by duration)
            "duration": max(e - s for s, e in bounds) / sample_rate,
            "wav": row["wav"],
            "voiced": row["voiced"] if use_voiced_mask else None,
            "soft": soft,
            "emo_index": -1 if row["ambiguous"] else labels.index(row["emo"]),
        }
        if per_utterance:
            data[row["ID"]] = dict(item, bounds=bounds)
        else:
            for k, bound in enumerate(bounds):
                data[f"{row['ID']}@{k}"] = dict(item, bounds=[bound])
    if not data:
        raise ManifestError(
            f"{csv_path}: no usable utterances for stage {stage!r} "
            f"({len(rows)} rows, {dropped} ambiguous left out)."
        )

    @sb.utils.data_pipeline.takes("bounds")
    @sb.utils.data_pipeline.provides("seg_start", "seg_stop")
    def segment_pipeline(bounds):
        """Chooses the item's segment (random among its grid when several)."""
        pick = 0
        if len(bounds) > 1:
            pick = int(torch.randint(len(bounds), (1,)))
        start, stop = bounds[pick]
        yield start
        yield stop

    @sb.utils.data_pipeline.takes("wav", "seg_start", "seg_stop")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav, seg_start, seg_stop):
        """Reads the segment's samples."""
        return read_segment(wav, seg_start, seg_stop, sample_rate)

    @sb.utils.data_pipeline.takes("voiced", "seg_start", "seg_stop")
    @sb.utils.data_pipeline.provides("mask")
    def mask_pipeline(voiced, seg_start, seg_stop):
        """Cuts the utterance's voiced intervals to the segment."""
        if voiced is None:
            return torch.ones(seg_stop - seg_start)
        return voiced_mask(voiced, seg_start, seg_stop - seg_start)

    @sb.utils.data_pipeline.takes("soft", "emo_index")
    @sb.utils.data_pipeline.provides("soft_target", "emo_encoded")
    def target_pipeline(soft, emo_index):
        """Soft-target tensor and the reference class index."""
        yield torch.tensor(soft, dtype=torch.float32)
        yield emo_index

    return sb.dataio.dataset.DynamicItemDataset(
        data,
        dynamic_items=[
            segment_pipeline,
            audio_pipeline,
            mask_pipeline,
            target_pipeline,
        ],
        output_keys=[
            "id",
            "utt_id",
            "wav",
            "seg_start",
            "seg_stop",
            "sig",
            "mask",
            "soft_target",
            "emo_encoded",
        ],
    )


def load_label_encoder(label_encoder, path, n_classes):
    """Loads the preparation's ``label_encoder.txt`` into an encoder.

    Arguments
    ---------
    label_encoder : sb.dataio.encoder.CategoricalEncoder
        The (empty) encoder from the hparams.
    path : str
        ``<save_folder>/label_encoder.txt`` written by the data preparation.
    n_classes : int
        Expected number of classes (``expect_len``).

    Returns
    -------
    list of str
        Labels in index order.
    """
    if not os.path.isfile(path):
        raise ManifestError(
            f"label encoder {path} does not exist; run the data preparation "
            "(prepare_iemocap) first."
        )
    label_encoder.expect_len(n_classes)
    label_encoder.load(path)
    if len(label_encoder) != n_classes:
        raise ManifestError(
            f"{path} holds {len(label_encoder)} classes "
            f"({list(label_encoder.lab2ind)}), the hparams expect "
            f"n_classes={n_classes}."
        )
    return [label_encoder.ind2lab[i] for i in range(n_classes)]


def check_held_out(fold_folder, protocol):
    """Checks that no test speaker (or session) is in train or valid.

    Several public re-implementations select checkpoints on the test
    speaker; this recipe refuses a fold where that could happen.

    Arguments
    ---------
    fold_folder : str
        ``<manifest_folder>/<protocol>/fold_<k>``.
    protocol : str
        ``session`` checks the ``group`` column (IEMOCAP's session),
        ``grouped`` (corpus presets without speakers) too, where it holds
        the recording a segment belongs to; any other protocol the
        ``spk_id`` column (rows without a known speaker are not checked).
        Manifests written before ``group`` was named so call it
        ``session``.

    Raises
    ------
    ManifestError
        Naming the fold and the leaked speakers or sessions.
    """
    column = "group" if protocol in ("session", "grouped") else "spk_id"
    unit = {"session": "session", "grouped": "group"}.get(protocol, column)
    groups = {}
    for stage in ("train", "valid", "test"):
        path = os.path.join(fold_folder, f"{stage}.csv")
        with open(path, newline="") as handle:
            groups[stage] = {
                row.get(column, row.get("session"))
                for row in csv.DictReader(handle)
            } - {None, "", "unknown"}
    for stage in ("train", "valid"):
        leaked = groups["test"] & groups[stage]
        if leaked:
            raise ManifestError(
                f"{fold_folder}: test {unit} {sorted(leaked)} also in "
                f"{stage}; re-run the data preparation (validation and "
                "training must never hold the test speaker/session)."
            )


def dataio_prep(hparams):
    """Builds the train/valid/test datasets of one fold from the hparams.

    Reads ``<manifest_folder>/<protocol>/fold_<fold>/{train,valid,test}.csv``
    and ``<manifest_folder>/label_encoder.txt``.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams (``manifest_folder``, ``protocol``, ``fold``,
        ``label_encoder``, ``n_classes``, ``segment_seconds``,
        ``segment_hop_seconds``, ``train_segments``, ``use_ambiguous``,
        ``target_type``, ``use_voiced_mask``, ``sample_rate``).

    Returns
    -------
    dict
        ``"train"``, ``"valid"``, ``"test"`` datasets and ``"labels"``.
    """
    manifest_folder = hparams["manifest_folder"]
    labels = load_label_encoder(
        hparams["label_encoder"],
        os.path.join(manifest_folder, "label_encoder.txt"),
        hparams["n_classes"],
    )
    fold_folder = os.path.join(
        manifest_folder, hparams["protocol"], f"fold_{hparams['fold']}"
    )
    datasets = {"labels": labels}
    for stage in ("train", "valid", "test"):
        path = os.path.join(fold_folder, f"{stage}.csv")
        if not os.path.isfile(path):
            raise ManifestError(
                f"manifest {path} does not exist: fold {hparams['fold']} of "
                f"protocol {hparams['protocol']!r} was not prepared (check "
                "--fold and --protocol, or re-run the data preparation)."
            )
    check_held_out(fold_folder, hparams["protocol"])
    for stage in ("train", "valid", "test"):
        datasets[stage] = build_segment_dataset(
            os.path.join(fold_folder, f"{stage}.csv"),
            labels,
            stage,
            replacements={"data_root": hparams["data_folder"]},
            **segment_options(hparams),
        )
    return datasets


def loader_options(hparams, dataset, stage):
    """DataLoader options of a stage from the hparams.

    Fixed-size batches (``train_dataloader_options`` /
    ``eval_dataloader_options``) or, for training with ``dynamic_batching:
    True``, SpeechBrain's ``DynamicBatchSampler``: batches of similar
    durations holding at most ``max_batch_length`` seconds of audio (useful
    with whole utterances, ``segment_seconds: null``).

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams.
    dataset : sb.dataio.dataset.DynamicItemDataset
        The stage's dataset (from :func:`dataio_prep`).
    stage : str
        ``"train"``, ``"valid"`` or ``"test"``.

    Returns
    -------
    dict
        Keyword arguments for ``Brain.fit`` / ``Brain.evaluate`` loaders.
    """
    key = "train" if stage == "train" else "eval"
    options = dict(hparams[f"{key}_dataloader_options"])
    if stage != "train" or not hparams["dynamic_batching"]:
        return options
    sampler = sb.dataio.sampler.DynamicBatchSampler(
        dataset,
        max_batch_length=hparams["max_batch_length"],
        num_buckets=hparams["num_buckets"],
        length_func=lambda item: item["duration"],
        shuffle=True,
        batch_ordering="random",
        seed=hparams["seed"],
    )
    loader = {
        key: value
        for key, value in options.items()
        if key not in ("batch_size", "shuffle", "drop_last", "sampler")
    }
    return dict(loader, batch_sampler=sampler)
