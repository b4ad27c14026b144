"""The one audio reader: checked file facts and mono float waveforms.

Every module that opens an audio file (the data preparation, the training
data pipeline, ``amser-sb classify``) goes through :func:`audio_info` and
:func:`read_audio`, and every problem with a file is one
:class:`AudioError` whose message names the file and the fix: a missing
file or a directory, a Git LFS pointer in place of the audio, a file
libsndfile cannot read, an empty file, a truncated WAV (its header
announces more frames than the file holds), a sample rate other than the
one required.

A truncated WAV is the silent case: libsndfile clamps the header's frame
count to the bytes present and reads the shorter signal without a
warning. :func:`wav_frames` compares the frames the ``data`` chunk
announces with those the file actually holds.

Authors
 * amser-sb contributors
"""

import dataclasses
import os
import struct

import soundfile
import torch

from amser_sb.core.errors import AmserUserError

__all__ = [
    "AudioError",
    "AudioInfo",
    "audio_info",
    "read_audio",
    "read_segment",
    "wav_frames",
]

#: The first bytes of a Git LFS pointer file.
LFS_POINTER_HEAD = b"version https://git-lfs"

#: ``data`` chunk sizes that writers use for "unknown length" (streams).
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


class AudioError(AmserUserError, RuntimeError):
    """An audio file that cannot be used; the message names file and fix.

    Arguments
    ---------
    message : str
        What is wrong with which file, and what to do.
    reason : str
        Short kind of problem (``missing audio``, ``not a file``, ``git-lfs
        pointer``, ``unreadable audio``, ``empty audio``, ``truncated
        audio``, ``wrong sample rate``, ``segment out of range``), e.g. for
        a ``skipped.csv`` row.

    Example
    -------
    >>> err = AudioError("x.wav does not exist", reason="missing audio")
    >>> err.reason, isinstance(err, RuntimeError)
    ('missing audio', True)
    """

    def __init__(self, message, reason="unreadable audio"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """Facts of a readable audio file.

    Arguments
    ---------
    path : str
        The file.
    frames : int
        Samples per channel.
    samplerate : int
        Sample rate, Hz.
    channels : int
        Number of channels.
    """

    path: str
    frames: int
    samplerate: int
    channels: int

    @property
    def duration(self):
        """Length in seconds."""
        return self.frames / self.samplerate

    @property
    def sample_rate(self):
        """Alias of ``samplerate`` (SpeechBrain's spelling)."""
        return self.samplerate


def wav_frames(path):
    """Frames a WAV's header announces and frames its ``data`` chunk holds.

    Arguments
    ---------
    path : str
        A file (anything but a RIFF/WAVE file gives None).

    Returns
    -------
    (int, int) or None
        ``(announced, held)``; None for other formats, a streamed WAV
        (unknown ``data`` size) or a header too short to tell.

    Example
    -------
    >>> import tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, np.zeros(1000), 16000, subtype="PCM_16")
    >>> wav_frames(path)
    (1000, 1000)
    >>> with open(path, "r+b") as f:
    ...     _ = f.truncate(os.path.getsize(path) - 600)
    >>> wav_frames(path)
    (1000, 700)
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fin:
            head = fin.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX"):
                return None
            if head[8:12] != b"WAVE":
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            block_align = None
            while True:
                chunk = fin.read(8)
                if len(chunk) < 8:
                    return None
                name = chunk[:4]
                (length,) = struct.unpack(order + "I", chunk[4:])
                if name == b"fmt ":
                    body = fin.read(min(length, 16))
                    if len(body) < 14:
                        return None
                    (block_align,) = struct.unpack(order + "H", body[12:14])
                    fin.seek(length - len(body) + (length & 1), os.SEEK_CUR)
                elif name == b"data":
                    if not block_align or length in _UNKNOWN_SIZES:
                        return None
                    held = max(size - fin.tell(), 0)
                    return length // block_align, min(held, length) // (
                        block_align
                    )
                else:
                    fin.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None


def _is_lfs_pointer(path):
    """True if the file starts like a Git LFS pointer."""
    try:
        with open(path, "rb") as fin:
            return fin.read(len(LFS_POINTER_HEAD)) == LFS_POINTER_HEAD
    except OSError:
        return False


def audio_info(path, sample_rate=None, prep_hint=True):
    """Frames, rate and channels of a usable audio file, or a clear error.

    Arguments
    ---------
    path : str or os.PathLike
        Audio file (any format libsndfile reads).
    sample_rate : int, optional
        Required sample rate; another one raises :class:`AudioError`.
        None accepts any rate.
    prep_hint : bool
        Suggest re-running the data preparation in the messages (the file
        came from a manifest); False for files a user names directly
        (``amser-sb classify``).

    Returns
    -------
    AudioInfo
        ``frames``, ``samplerate``, ``channels``, ``duration``.

    Raises
    ------
    AudioError
        Missing file, directory, Git LFS pointer, unreadable, empty,
        truncated WAV, or another rate than ``sample_rate``; the message
        names the file and the fix, ``reason`` the kind.

    Example
    -------
    >>> import tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, np.zeros((800, 2)), 16000)
    >>> info = audio_info(path, sample_rate=16000)
    >>> info.frames, info.samplerate, info.channels, info.duration
    (800, 16000, 2, 0.05)
    >>> audio_info(path, sample_rate=8000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    amser_sb.core.audio.AudioError: ...a.wav: sample rate 16000 Hz, expected 8000...
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise AudioError(
            f"{path} is a directory, not an audio file; pass the files in "
            f"it (e.g. {os.path.join(path, '*.wav')})",
            reason="not a file",
        )
    if not os.path.isfile(path):
        raise AudioError(
            f"audio file {path} does not exist; check the path"
            + (" (or re-run the data preparation if a manifest names it)"
               if prep_hint else ""),
            reason="missing audio",
        )
    if _is_lfs_pointer(path):
        raise AudioError(
            f"{path} is a Git LFS pointer, not audio: the corpus was cloned "
            "or downloaded without git-lfs; run 'git lfs pull' in its "
            "repository",
            reason="git-lfs pointer",
        )
    try:
        info = soundfile.info(path)
    except Exception as err:  # soundfile raises several types
        raise AudioError(
            f"cannot read audio file {path}: {err}. Check that it is a "
            "valid WAV/FLAC (convert it, e.g. sox in.mp3 out.wav)"
            + (", or re-run the data preparation." if prep_hint else "."),
            reason="unreadable audio",
        ) from err
    if info.frames <= 0:
        raise AudioError(
            f"{path}: empty audio file (0 samples); remove it from the "
            "corpus or restore it",
            reason="empty audio",
        )
    frames = wav_frames(path)
    if frames is not None and frames[1] < frames[0]:
        announced, held = frames
        rate = info.samplerate
        raise AudioError(
            f"{path}: truncated WAV: the header announces {announced} "
            f"frames ({announced / rate:.2f} s) but the file holds {held} "
            f"({held / rate:.2f} s); the copy is incomplete: restore the "
            "file from the corpus release",
            reason="truncated audio",
        )
    if sample_rate is not None and info.samplerate != sample_rate:
        raise AudioError(
            f"{path}: sample rate {info.samplerate} Hz, expected "
            f"{sample_rate} Hz; resample it (e.g. sox in.wav -r "
            f"{sample_rate} out.wav)"
            + (" or re-run the data preparation (which converts corpus "
               "presets once)" if prep_hint else ""),
            reason="wrong sample rate",
        )
    return AudioInfo(path, int(info.frames), int(info.samplerate),
                     int(info.channels))


def read_audio(path, start=0, stop=None, sample_rate=None, prep_hint=True):
    """Samples ``[start, stop)`` of an audio file as a mono waveform.

    Reads with SpeechBrain's ``speechbrain.dataio.dataio.read_audio``
    (its ``{"file", "start", "stop"}`` form) after :func:`audio_info`'s
    checks.

    Arguments
    ---------
    path : str or os.PathLike
        Audio file (checked by :func:`audio_info`).
    start : int
        First sample (at the file's rate).
    stop : int, optional
        One past the last sample; None reads to the end.
    sample_rate : int, optional
        Required sample rate (None: any; no resampling is done here).
    prep_hint : bool
        As :func:`audio_info`.

    Returns
    -------
    torch.Tensor
        ``[time]`` float32 waveform; channels are averaged.

    Raises
    ------
    AudioError
        As :func:`audio_info`, or when ``[start, stop)`` holds no sample
        (``reason`` ``segment out of range``).

    Example
    -------
    >>> import tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, np.arange(8) / 10, 16000, subtype="FLOAT")
    >>> read_audio(path, 2, 5)
    tensor([0.2000, 0.3000, 0.4000])
    >>> read_audio(path).shape
    torch.Size([8])
    """
    from speechbrain.dataio.dataio import read_audio as sb_read_audio

    path = os.fspath(path)
    info = audio_info(path, sample_rate, prep_hint=prep_hint)
    start = int(start)
    empty = AudioError(
        f"{path}: no samples in [{start}, {stop}) (the file has "
        f"{info.frames}); the manifest's segment lies beyond the end of the "
        "file. Re-run the data preparation (the file may have changed).",
        reason="segment out of range",
    )
    if start < 0 or start >= info.frames or (
        stop is not None and int(stop) <= start
    ):
        raise empty
    # SpeechBrain's reader with a sample range (no "stop": to the end).
    spec = {"file": path, "start": start}
    if stop is not None:
        spec["stop"] = min(int(stop), info.frames)
    try:
        wav = sb_read_audio(spec)
    except (RuntimeError, ValueError) as err:
        raise AudioError(
            f"cannot read audio file {path}: {err}",
            reason="unreadable audio",
        ) from err
    if wav.dim() == 2:  # [time, channels]
        wav = wav.mean(dim=1)
    if wav.numel() == 0:
        raise empty
    return wav.to(torch.float32).contiguous()


def read_segment(path, start=0, stop=None, sample_rate=16000):
    """:func:`read_audio` with a required 16 kHz rate by default.

    The data pipeline's reader (its segments are 16 kHz sample ranges).

    Arguments
    ---------
    path : str or os.PathLike
        Audio file.
    start, stop : int
        Sample range ``[start, stop)``; ``stop`` None reads to the end.
    sample_rate : int
        Required sample rate.

    Returns
    -------
    torch.Tensor
        ``[time]`` float32 waveform.

    Example
    -------
    >>> import tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, np.zeros(16), 16000)
    >>> read_segment(path, 0, 4).shape
    torch.Size([4])
    """
    return read_audio(path, start=start, stop=stop, sample_rate=sample_rate)
