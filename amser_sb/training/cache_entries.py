"""What a feature-cache entry must look like, to catch wrong entries.

An entry of :class:`amser_sb.training.feature_cache.FeatureCache` is found by the
hash of its key; a file that got there otherwise (copied caches, another
segment's entry, a different storage type) was used silently.
``EntryExpectations`` checks every loaded entry against what its key
implies before it is used:

- the storage type (``float16`` / ``float32``) of the cache;
- the number of frames for the segment's number of samples: the
  backbone's own count (``frame_counts`` of
  :class:`amser_sb.lobes.SpeechEncoder`, ``output_lengths`` of
  :class:`amser_sb.lobes.AMResNet`) until a computed segment of that
  length shows the actual count, which then wins;
- the trailing shape (feature dimension, layers): from the entries this
  process computed, else from ``entry_shape.json`` in the cache folder
  (written with the first computed entry), else from the first entry that
  passed the other checks.

Authors
 * amser-sb contributors
"""

import json
import os
import tempfile

import torch

#: File in the cache folder recording the entries' shape after the frames.
SHAPE_FILE = "entry_shape.json"


class EntryExpectations:
    """Expected dtype and shape of the cache entries of one backbone.

    Arguments
    ---------
    backbone : torch.nn.Module
        The cached backbone (may offer ``frame_counts`` or
        ``output_lengths``).
    dtype : torch.dtype
        The storage type of the entries.
    folder : str, optional
        The cache folder of this backbone (to record and read the shape).

    Example
    -------
    >>> check = EntryExpectations(torch.nn.Identity(), torch.float32)
    >>> check.learn(torch.zeros(5, 3), n_samples=80)
    >>> check.problem(torch.zeros(5, 3), n_samples=80) is None
    True
    >>> check.problem(torch.zeros(7, 3), n_samples=80)
    '7 frames, expected 5 for 80 samples'
    >>> check.problem(torch.zeros(5, 4), n_samples=80)
    'shape (5, 4), expected (frames, 3)'
    >>> check.problem(torch.zeros(5, 3, dtype=torch.float16), n_samples=80)
    'dtype torch.float16, expected torch.float32'
    """

    def __init__(self, backbone, dtype, folder=None):
        self.backbone = backbone
        self.dtype = dtype
        self.folder = folder
        self.trailing = None  # shape after the frame axis (+ layers before)
        self.ndim = None
        self._frames = {}  # n_samples -> frames seen when computing
        self._formula = self._frame_formula(backbone)

    @staticmethod
    def _frame_formula(backbone):
        for name in ("frame_counts", "output_lengths"):
            method = getattr(backbone, name, None)
            if callable(method):
                return method
        return None

    def expected_frames(self, n_samples):
        """Frames of a segment of ``n_samples`` samples, or None if unknown.

        Arguments
        ---------
        n_samples : int

        Returns
        -------
        int or None
        """
        if n_samples in self._frames:
            return self._frames[n_samples]
        if self._formula is None:
            return None
        try:
            with torch.no_grad():
                counts = self._formula(torch.tensor([int(n_samples)]))
            return int(counts.reshape(-1)[0])
        except Exception:  # a backbone without a usable count
            self._formula = None
            return None

    def learn(self, feats, n_samples):
        """Record a computed entry (ground truth for its length and shape).

        Arguments
        ---------
        feats : torch.Tensor
            ``[frames, feat]`` (or ``[layers, frames, feat]``) as computed.
        n_samples : int
            Samples of its segment.
        """
        self._frames[int(n_samples)] = int(feats.shape[-2])
        known = self.trailing
        self.ndim = feats.dim()
        self.trailing = _trailing(feats)
        if known != self.trailing and self.folder is not None:
            self._write_shape()

    def _write_shape(self):
        record = {"ndim": self.ndim, "trailing": list(self.trailing)}
        path = os.path.join(self.folder, SHAPE_FILE)
        if self._read_shape() == record:
            return
        os.makedirs(self.folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(record, out)
        os.replace(tmp, path)

    def _read_shape(self):
        if self.folder is None:
            return None
        try:
            with open(os.path.join(self.folder, SHAPE_FILE)) as handle:
                record = json.load(handle)
            return {"ndim": int(record["ndim"]),
                    "trailing": [int(x) for x in record["trailing"]]}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def problem(self, feats, n_samples):
        """Why a loaded entry does not fit its key, or None.

        Arguments
        ---------
        feats : torch.Tensor
            The loaded entry, in its stored dtype.
        n_samples : int
            Samples of the segment its key names.

        Returns
        -------
        str or None
        """
        if not isinstance(feats, torch.Tensor):
            return f"a {type(feats).__name__}, not a tensor"
        if self.trailing is None:
            record = self._read_shape()
            if record is not None:
                self.ndim = record["ndim"]
                self.trailing = tuple(record["trailing"])
        if feats.dtype != self.dtype:
            return f"dtype {feats.dtype}, expected {self.dtype}"
        if feats.dim() < 2 or feats.dim() != (self.ndim or feats.dim()):
            return f"{feats.dim()} dimensions, expected {self.ndim or '>= 2'}"
        if self.trailing is not None and _trailing(feats) != self.trailing:
            want = [*self.trailing[:-1], "frames", self.trailing[-1]]
            return (
                f"shape {tuple(feats.shape)}, expected "
                f"({', '.join(str(w) for w in want)})"
            )
        frames = self.expected_frames(n_samples)
        if frames is not None and feats.shape[-2] != frames:
            return (
                f"{feats.shape[-2]} frames, expected {frames} for "
                f"{n_samples} samples"
            )
        if self.trailing is None:
            self.ndim = feats.dim()
            self.trailing = _trailing(feats)
        return None


def _trailing(feats):
    """Every dimension but the frame axis (``[..., frames, feat]``)."""
    shape = tuple(feats.shape)
    return shape[:-2] + shape[-1:]
