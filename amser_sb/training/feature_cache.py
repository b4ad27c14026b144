"""On-disk cache of frozen self-supervised backbone outputs.

With a frozen wav2vec 2.0 the backbone output of a segment never changes,
yet it costs most of an epoch's compute. :class:`FeatureCache` computes it
once per segment and stores it on disk; later epochs (and later runs, and
the other folds of a cross-validation, which share the audio) read it back.

Keys (a stale entry can never be read back):

- the **backbone**: its class, its options that change the output (e.g.
  waveform normalisation, all-layers output), its model configuration and
  a fingerprint of every weight; these name a sub-folder, so another
  checkpoint, config or option writes a different set of files;
- the **audio**: the file's real path, size and modification time (or, with
  ``content_hash=True``, a hash of its bytes) and the segment's first and
  last sample.

Entries are computed on the segment cropped to its real length (no padding
can reach the backbone), in eval mode without gradients, so a segment's
features do not depend on the batch it came with. Missing segments of equal
length (most training segments are exactly 4 s) are run as one batch, which
is about 2.5x faster than one by one for wav2vec2-base on CPU; equal lengths
mean no padding, so the result is the same up to float rounding.

The same cache serves a frozen AM-ResNet (the paper's stage 2 keeps it
fixed): its output also depends on the voiced mask, which is then given to
:meth:`FeatureCache.features` and keyed by a digest of its samples.

Layout: ``<folder>/<backbone fingerprint>/identity.json`` describes the
backbone; ``<folder>/<backbone fingerprint>/<ab>/<audio key>.pt`` holds one
segment's ``[frames, feat]`` (or ``[layers, frames, feat]``) tensor.

Authors
 * amser-sb contributors 2026
"""

import hashlib
import json
import logging
import os
import tempfile

import torch

logger = logging.getLogger(__name__)

__all__ = ["FeatureCache", "backbone_identity", "weights_fingerprint"]

#: Bump when the stored format or the way entries are computed changes.
CACHE_FORMAT = 1

# Configuration entries that name where a model came from, not what it does.
_VOLATILE_CONFIG_KEYS = (
    "_name_or_path",
    "transformers_version",
    "_commit_hash",
)
# Module attributes that do not change what ``extract`` returns.
_IGNORED_OPTIONS = ("training", "per_utterance", "output_norm", "freeze")


def weights_fingerprint(module):
    """A hash of every parameter and buffer (names, dtypes, shapes, values).

    Arguments
    ---------
    module : torch.nn.Module or dict
        The module to fingerprint, or a dict of named tensors (e.g. the
        frozen part of a state dict).

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> a = torch.nn.Linear(2, 2)
    >>> weights_fingerprint(a) == weights_fingerprint(a)
    True
    >>> with torch.no_grad():
    ...     _ = a.weight.add_(1.0)
    >>> len(weights_fingerprint(a))
    40
    """
    digest = hashlib.sha1()
    state = module if isinstance(module, dict) else module.state_dict()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def backbone_identity(backbone):
    """What determines a frozen backbone's output, as a JSON-able dict.

    A backbone may define ``cache_identity()`` to say it itself; otherwise
    the identity is its class, its simple public options (minus those that
    act after the cacheable step), whether it returns all hidden layers,
    its Hugging Face configuration (if any) and the fingerprint of the
    weights of the underlying model.

    Arguments
    ---------
    backbone : torch.nn.Module
        E.g. :class:`amser_sb.lobes.SpeechEncoder`.

    Returns
    -------
    dict
        The identity.

    Example
    -------
    >>> identity = backbone_identity(torch.nn.Linear(2, 2))
    >>> sorted(identity)
    ['all_hiddens', 'class', 'config', 'format', 'options', 'weights']
    """
    if hasattr(backbone, "cache_identity"):
        identity = dict(backbone.cache_identity(), format=CACHE_FORMAT)
        if "frozen_state" in identity:  # partly fine-tuned: frozen weights
            identity["weights"] = weights_fingerprint(
                identity.pop("frozen_state")
            )
        if "weights" not in identity and hasattr(backbone, "backbone"):
            identity["weights"] = weights_fingerprint(backbone.backbone())
        return identity
    model = getattr(getattr(backbone, "lobe", None), "model", None)
    if model is None:
        model = backbone
    config = {}
    if hasattr(model, "config") and hasattr(model.config, "to_dict"):
        config = {
            key: value
            for key, value in model.config.to_dict().items()
            if key not in _VOLATILE_CONFIG_KEYS
        }
    options = {
        name: value
        for name, value in sorted(vars(backbone).items())
        if not name.startswith("_")
        and name not in _IGNORED_OPTIONS
        and isinstance(value, (bool, int, float, str, type(None)))
    }
    return {
        "format": CACHE_FORMAT,
        "class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "options": options,
        "all_hiddens": getattr(backbone, "layer_weights", None) is not None,
        "config": config,
        "weights": weights_fingerprint(model),
    }


def _mask_digest(mask):
    """Hex digest of a 0/1 sample mask."""
    bits = (mask.detach().cpu() != 0).to(torch.uint8).numpy()
    return hashlib.sha1(bits.tobytes()).hexdigest()


def _hash_json(value):
    """Hex digest of a JSON-serialisable value."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


class FeatureCache:
    """Frozen-backbone features, computed once per segment, kept on disk.

    Arguments
    ---------
    folder : str
        Cache root (shared by experiments; one sub-folder per backbone).
    backbone : torch.nn.Module
        The frozen backbone. If it has ``extract_frozen(wavs, wav_lens)``
        (as :class:`amser_sb.lobes.SpeechEncoder`: ``extract`` of a frozen
        encoder, the states below the fine-tuned top layers of a partly
        fine-tuned one) or ``extract`` that is what is cached; otherwise
        ``forward`` (first output if a tuple).
    dtype : torch.dtype or str
        Storage type: ``float16`` (default; halves the disk use, about 3
        decimal digits) or ``float32`` (exact).
    content_hash : bool
        Key audio by a hash of the file's bytes instead of its size and
        modification time (slower the first time; robust to copies that
        reset times).
    max_batch : int
        Most equal-length missing segments run through the backbone at
        once (default 8).

    Example
    -------
    >>> backbone = torch.nn.Linear(4, 3)
    >>> cache = FeatureCache(getfixture("tmp_path"), backbone, "float32")
    >>> path = str(getfixture("tmp_path") / "a.wav")
    >>> _ = open(path, "wb").write(b"RIFF")
    >>> sig = torch.randn(2, 4)  # two "frames" of 4 values
    >>> feats, lens = cache.features([sig], [path], [0], [8])
    >>> feats.shape, cache.misses
    (torch.Size([1, 2, 3]), 1)
    >>> _ = cache.features([sig], [path], [0], [8])
    >>> cache.hits
    1
    """

    def __init__(
        self,
        folder,
        backbone,
        dtype="float16",
        content_hash=False,
        max_batch=8,
    ):
        self.root = str(folder)
        self.backbone = backbone
        self.max_batch = max(1, int(max_batch))
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype
        self.content_hash = content_hash
        self.hits = 0
        self.misses = 0
        self._content_digests = {}
        self._folder = None
        self.rejected = 0  # loaded entries that did not fit their key
        self._expectations = None

    @property
    def folder(self):
        """The backbone's sub-folder (fingerprinted lazily, once)."""
        if self._folder is None:
            identity = backbone_identity(self.backbone)
            identity["dtype"] = str(self.dtype)
            name = _hash_json(identity)[:20]
            self._folder = os.path.join(self.root, name)
            os.makedirs(self._folder, exist_ok=True)
            # Atomic: several processes (DDP ranks) may open one cache.
            handle, tmp = tempfile.mkstemp(dir=self._folder, suffix=".tmp")
            with os.fdopen(handle, "w") as f:
                json.dump(identity, f, indent=2, sort_keys=True, default=str)
            os.replace(tmp, os.path.join(self._folder, "identity.json"))
            logger.info("feature cache for this backbone: %s", self._folder)
        return self._folder

    def reset_stats(self):
        """Zeroes the hit and miss counters."""
        self.hits = 0
        self.misses = 0

    def audio_key(self, path, start, stop, extra=None):
        """The key of one segment of one file.

        Arguments
        ---------
        path : str
            Audio file.
        start, stop : int
            Segment bounds in samples.
        extra : str, optional
            Anything else the features depend on (e.g. a mask digest).

        Returns
        -------
        str
            Hex digest.
        """
        real = os.path.realpath(path)
        if self.content_hash:
            if real not in self._content_digests:
                digest = hashlib.sha1()
                with open(real, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                self._content_digests[real] = digest.hexdigest()
            audio = self._content_digests[real]
        else:
            stat = os.stat(real)
            audio = [real, stat.st_size, stat.st_mtime_ns]
        key = [audio, int(start), int(stop)]
        if extra is not None:
            key.append(extra)
        return _hash_json(key)

    def _entry(self, key):
        """File holding the entry of ``key``."""
        return os.path.join(self.folder, key[:2], key + ".pt")

    def _entry_check(self):
        """The shape and dtype expectations of this cache's entries."""
        if self._expectations is None:
            from amser_sb.training.cache_entries import EntryExpectations

            self._expectations = EntryExpectations(
                self.backbone, self.dtype, folder=self.folder
            )
        return self._expectations

    def load(self, path, start, stop, extra=None):
        """The stored features of a segment, or None.

        An entry whose dtype, frame count (for ``stop - start`` samples) or
        feature shape does not fit its key (see
        :class:`amser_sb.training.cache_entries.EntryExpectations`) is not used: it
        is logged, counted in ``rejected`` and recomputed.

        Arguments
        ---------
        path : str
            Audio file.
        start, stop : int
            Segment bounds in samples.
        extra : str, optional
            Extra key (see :meth:`audio_key`).

        Returns
        -------
        torch.Tensor or None
            ``[frames, feat]`` (float32) if cached.
        """
        entry = self._entry(self.audio_key(path, start, stop, extra))
        if not os.path.isfile(entry):
            return None
        try:
            feats = torch.load(entry, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: recompute
            logger.warning("unreadable cache entry %s (%s); recomputing",
                           entry, err)
            return None
        problem = self._entry_check().problem(feats, int(stop) - int(start))
        if problem is not None:
            self.rejected += 1
            logger.warning(
                "cache entry %s does not fit %s [%d:%d]: %s; recomputing "
                "(%d wrong entries so far)", entry, path, start, stop,
                problem, self.rejected,
            )
            return None
        return feats.float()

    def store(self, path, start, stop, feats, extra=None):
        """Stores a segment's features (atomically).

        Arguments
        ---------
        path : str
            Audio file.
        start, stop : int
            Segment bounds in samples.
        feats : torch.Tensor
            ``[frames, feat]`` features.
        extra : str, optional
            Extra key (see :meth:`audio_key`).
        """
        entry = self._entry(self.audio_key(path, start, stop, extra))
        self._entry_check().learn(feats, int(stop) - int(start))
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        # A unique temporary file renamed over the entry: processes that
        # fill the cache at once (DDP ranks, several runs) never read a
        # half-written entry; the last rename wins with equal content.
        handle, tmp = tempfile.mkstemp(dir=os.path.dirname(entry),
                                       suffix=".tmp")
        os.close(handle)
        try:
            torch.save(feats.detach().to("cpu", self.dtype).clone(), tmp)
            os.replace(tmp, entry)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @torch.no_grad()
    def compute(self, sigs, masks=None):
        """Runs the backbone on unpadded segments.

        Segments of equal length go through together (up to ``max_batch``
        at a time, no padding); a backbone with a ``per_utterance`` option
        (:class:`amser_sb.lobes.SpeechEncoder`) is told not to split such
        a batch again.

        Arguments
        ---------
        sigs : list of torch.Tensor
            ``[time]`` waveforms (on the backbone's device).
        masks : list of torch.Tensor, optional
            ``[time]`` sample masks, passed on as ``mask=`` (e.g. to
            :class:`amser_sb.lobes.AMResNet`).

        Returns
        -------
        list of torch.Tensor
            ``[frames, feat]`` (or ``[layers, frames, feat]``) per segment.
        """
        outs = [None] * len(sigs)
        by_length = {}
        for index, sig in enumerate(sigs):
            by_length.setdefault(sig.shape[-1], []).append(index)
        was_training = self.backbone.training
        per_utterance = getattr(self.backbone, "per_utterance", None)
        self.backbone.eval()
        try:
            if per_utterance is not None:
                self.backbone.per_utterance = "never"
            for indices in by_length.values():
                for first in range(0, len(indices), self.max_batch):
                    chunk = indices[first : first + self.max_batch]
                    wavs = torch.stack([sigs[i] for i in chunk])
                    lens = torch.ones(len(chunk), device=wavs.device)
                    if masks is not None:
                        mask = torch.stack([masks[i] for i in chunk])
                        out = self.backbone(wavs, lens, mask=mask)
                    elif hasattr(self.backbone, "extract_frozen"):
                        out = self.backbone.extract_frozen(wavs, lens)
                    elif hasattr(self.backbone, "extract"):
                        out = self.backbone.extract(wavs, lens)
                    else:
                        out = self.backbone(wavs)
                    if isinstance(out, (tuple, list)):
                        out = out[0]
                    for row, index in enumerate(chunk):
                        outs[index] = out[row]
        finally:
            if per_utterance is not None:
                self.backbone.per_utterance = per_utterance
            self.backbone.train(was_training)
        return outs

    def features(self, sigs, paths, starts, stops, masks=None):
        """Features of a batch of segments, from the cache or computed.

        Arguments
        ---------
        sigs : list of torch.Tensor
            ``[time]`` unpadded waveform of each segment.
        paths : list of str
            Audio file of each segment.
        starts, stops : list of int
            Bounds of each segment in its file, samples.
        masks : list of torch.Tensor, optional
            ``[time]`` sample mask of each segment, given to the backbone as
            ``mask=``; a digest of each mask is part of its key.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, feat]`` (or ``[batch, layers, frames, feat]``),
            zero-padded on the frame axis, on the device of ``sigs``.
        lens : torch.Tensor
            ``[batch]`` relative lengths in frames.
        """
        extras = [None] * len(sigs)
        if masks is not None:
            extras = [_mask_digest(mask) for mask in masks]
        outs = []
        missing = []
        for index, (path, start, stop) in enumerate(zip(paths, starts, stops)):
            feats = self.load(path, int(start), int(stop), extras[index])
            if feats is None:
                missing.append(index)
            outs.append(feats)
        self.hits += len(outs) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self.compute(
                [sigs[i] for i in missing],
                None if masks is None else [masks[i] for i in missing],
            )
            for index, feats in zip(missing, computed):
                self.store(paths[index], int(starts[index]),
                           int(stops[index]), feats, extras[index])
                # what later epochs will read back
                outs[index] = feats.to(self.dtype).float()
        outs = [out.to(sigs[0].device) for out in outs]
        frames = [out.shape[-2] for out in outs]
        longest = max(frames)
        padded = torch.stack(
            [
                torch.nn.functional.pad(out, (0, 0, 0, longest - out.shape[-2]))
                for out in outs
            ]
        )
        lens = torch.tensor(frames, dtype=torch.float32, device=padded.device)
        return padded, lens / longest
