"""Checking IEMOCAP's wavs and finding their voiced intervals, in parallel.

Each utterance's wav is checked (present, readable, complete, 16 kHz mono:
otherwise a skip status naming the file and the fix) and, when the recipe
needs them, its MADD voiced intervals are computed
(:func:`analyse_wav`); :func:`analyse_all` runs the checks of a whole
corpus, in worker processes when asked (``num_workers``).

Authors
 * amser-sb contributors
"""

from concurrent.futures import ProcessPoolExecutor

from amser_sb.core.audio import AudioError, audio_info, read_audio
from amser_sb.data.audio_prep import (
    AUDIO_SKIP_REASONS,
    SAMPLE_RATE,
    voiced_intervals,
)


def analyse_wav(path, need_voiced=True, sample_rate=SAMPLE_RATE,
                madd_options=None):
    """Check one wav and compute its MADD voiced intervals.

    Arguments
    ---------
    path : str
        The wav file.
    need_voiced : bool
        Read the samples and run MADD (else only the header is read).
    sample_rate : int
        Required sample rate.
    madd_options : dict, optional
        Keyword arguments of ``amser_sb.core.madd.madd``.

    Returns
    -------
    dict
        ``status`` (``ok``, ``missing wav``, ``unreadable audio``,
        ``truncated audio`` or ``not 16 kHz mono``), ``detail``,
        ``num_samples``, ``voiced`` (formatted intervals, or None).

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(1600), 16000, subtype="PCM_16")
    >>> analyse_wav(path, need_voiced=False)["num_samples"]
    1600
    >>> with open(path, "r+b") as f:
    ...     _ = f.truncate(44 + 2 * 400)
    >>> analyse_wav(path)["status"]
    'truncated audio'
    """
    out = {"status": "ok", "detail": "", "num_samples": None, "voiced": None}
    try:
        info = audio_info(path)
    except AudioError as err:
        reason = AUDIO_SKIP_REASONS.get(err.reason, "unreadable audio")
        if reason == "empty audio":
            reason = "unreadable audio"
        if reason == "missing wav":
            out.update(status=reason, detail=f"{path} does not exist")
        else:
            out.update(status=reason, detail=str(err))
        return out
    if info.samplerate != sample_rate or info.channels != 1:
        out.update(
            status="not 16 kHz mono",
            detail=(
                f"{path}: {info.samplerate} Hz, {info.channels} channels; "
                f"convert to {sample_rate} Hz mono, e.g. sox in.wav -r "
                f"{sample_rate} -c 1 out.wav"
            ),
        )
        return out
    out["num_samples"] = info.frames
    if not need_voiced:
        return out
    try:
        wav = read_audio(path).numpy()
    except AudioError as err:
        out.update(status="unreadable audio", detail=str(err),
                   num_samples=None)
        return out
    out["num_samples"] = int(wav.shape[0])
    try:
        out["voiced"] = voiced_intervals(wav, madd_options or {})
    except Exception as err:
        raise RuntimeError(f"{path}: MADD failed: {err}") from err
    return out


def _analyse_job(job):
    """Worker entry point: ``(path, need_voiced, sr, madd_options)``."""
    return analyse_wav(*job)


def _init_worker():
    """Worker start-up: one intra-op thread per process."""
    import torch

    torch.set_num_threads(1)


def analyse_all(jobs, num_workers):
    """Run :func:`analyse_wav` over jobs, in processes if asked."""
    if num_workers <= 1 or len(jobs) < 2 * num_workers:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [_analyse_job(job) for job in jobs]
        finally:
            torch.set_num_threads(threads)
    import multiprocessing

    # fork: workers start at once (no re-import of torch per worker).
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunk = max(1, min(64, len(jobs) // (8 * num_workers)))
    with ProcessPoolExecutor(
        num_workers, mp_context=ctx, initializer=_init_worker
    ) as pool:
        return list(pool.map(_analyse_job, jobs, chunksize=chunk))
