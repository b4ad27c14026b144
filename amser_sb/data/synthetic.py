"""A small synthetic corpus in the IEMOCAP_full_release layout.

The generator writes what the IEMOCAP preparation reads, with the real
release's clutter, so that tests, the demo and the benchmarks can run
without the (licensed) corpus:

* ``SessionN/dialog/EmoEvaluation/<dialog>.txt``: annotation blocks in the
  release's format (``[start - end]<TAB>utt<TAB>code<TAB>[V, A, D]``,
  ``C-E*`` categorical votes of external evaluators, ``C-F1``/``C-M1``
  self-evaluations, ``A-*`` dimensional lines), with the release's quirks:
  ``Neutral state`` beside ``Neutral``, ``Other:<free text>``, C- lines with
  and without a trailing ``;``, free-text comments;
* ``SessionN/sentences/wav/<dialog>/<utt>.wav``: 16 kHz mono 16-bit PCM;
* macOS AppleDouble ``._*`` files beside the annotations and the wavs, and
  the per-evaluator ``Categorical/``, ``Attribute/`` and ``Self-evaluation/``
  subfolders, none of which are the annotations to parse.

Every utterance is one of a few *kinds*: a clear utterance of one of the
four classes (``neu``, ``hap``, ``sad``, ``ang``, or ``exc`` that merges
into ``hap``), an ambiguous ``xxx`` utterance whose votes are mostly on the
four classes (``amb``, kept by the preparation) or mostly elsewhere
(``amb_low``, dropped), or an excluded class (``fru``, ``sur``, ``fea``,
``dis``, ``oth``).

The audio is learnable: each class is a harmonic tone with its own
fundamental frequency, pitch contour, harmonic richness, loudness and
tremolo (a small speaker-dependent pitch shift and per-utterance jitter on
top), plus a little noise. Ambiguous utterances mix the tones of the
classes their evaluators voted for. Each utterance starts and ends with a
silent stretch and, when long enough, has a pause in the middle; silences
are low-level noise (or digital zeros), and their exact sample intervals
are part of the returned ground truth.

Authors
 * amser-sb contributors
"""

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

#: Default kinds, cycled over each speaker's utterances (then shuffled).
DEFAULT_KINDS = ("neu", "hap", "sad", "ang", "exc", "amb", "amb_low", "fru")

#: Consensus code written in the header line for each kind.
KIND_TO_CODE = {
    "neu": "neu",
    "hap": "hap",
    "exc": "exc",
    "sad": "sad",
    "ang": "ang",
    "amb": "xxx",
    "amb_low": "xxx",
    "fru": "fru",
    "sur": "sur",
    "fea": "fea",
    "dis": "dis",
    "oth": "oth",
}

# Category names as the release writes them in C- lines.
_CATEGORY = {
    "neu": ("Neutral", "Neutral state"),
    "hap": ("Happiness",),
    "exc": ("Excited",),
    "sad": ("Sadness",),
    "ang": ("Anger",),
    "fru": ("Frustration",),
    "sur": ("Surprise",),
    "fea": ("Fear",),
    "dis": ("Disgust",),
    "oth": ("Other",),
}
_OTHER_CATEGORIES = (
    "Frustration",
    "Surprise",
    "Other",
    "Other:amused",
    "Fear",
    "Disgust",
)
_FOUR = ("neu", "hap", "sad", "ang")

# Timbre of each audio class: f0 (Hz), relative pitch glide over a voiced
# stretch, harmonic amplitudes, peak amplitude, tremolo rate (Hz) and depth.
_TIMBRE = {
    "neu": dict(f0=140.0, glide=0.0, harm=(1.0, 0.5, 0.25), amp=0.25,
                trem_hz=0.0, trem=0.0),
    "hap": dict(f0=240.0, glide=0.2, harm=(1.0, 0.7, 0.5, 0.3), amp=0.35,
                trem_hz=4.0, trem=0.3),
    "sad": dict(f0=100.0, glide=-0.15, harm=(1.0, 0.3), amp=0.15,
                trem_hz=0.0, trem=0.0),
    "ang": dict(f0=200.0, glide=0.05, harm=(1.0, 0.9, 0.8, 0.7, 0.6),
                amp=0.6, trem_hz=7.0, trem=0.4),
    "other": dict(f0=170.0, glide=-0.05, harm=(1.0, 0.2, 0.6), amp=0.3,
                  trem_hz=2.0, trem=0.2),
}
_SPEAKER_PITCH = {"F": 1.12, "M": 0.9}


def make_iemocap_corpus(
    root,
    utts_per_speaker=8,
    min_dur=1.0,
    max_dur=3.0,
    sample_rate=16000,
    seed=0,
    sessions=(1, 2, 3, 4, 5),
    dialogs_per_session=2,
    kinds=DEFAULT_KINDS,
    silence_level=1e-3,
    noise_level=3e-3,
    junk=True,
    num_workers=1,
):
    """Write an IEMOCAP-layout corpus with known votes and silences.

    Arguments
    ---------
    root : str or os.PathLike
        Folder to write into (created; plays ``IEMOCAP_full_release/``).
        Use a new or empty folder: files of an earlier, different corpus
        there are overwritten where names collide, not removed.
    utts_per_speaker : int
        Utterances per speaker (two speakers, F and M, per session).
    min_dur, max_dur : float
        Utterance durations are drawn uniformly from this range, seconds.
    sample_rate : int
        Sample rate of the wavs (the release is 16000).
    seed : int
        Seed of everything random; the corpus is a function of the
        arguments (``num_workers`` included or not).
    sessions : sequence of int
        Session numbers to write.
    dialogs_per_session : int
        Dialogs per session; a speaker's utterances are spread over them.
    kinds : sequence of str
        Kinds cycled over each speaker's utterances before a seeded
        shuffle (keys of ``KIND_TO_CODE``); with ``utts_per_speaker`` a
        multiple of ``len(kinds)`` every speaker gets every kind equally.
    silence_level : float
        Standard deviation of the noise in silent stretches; 0 writes
        digital silence (exact zeros).
    noise_level : float
        Standard deviation of the noise added to voiced stretches.
    junk : bool
        Also write AppleDouble ``._*`` files and the evaluator subfolders.
    num_workers : int
        Processes that synthesise the audio (for large corpora).

    Returns
    -------
    dict
        ``{"root", "sample_rate", "utterances"}``; ``utterances`` maps each
        utterance ID, in corpus order, to a dict with ``id``, ``session``
        (int),
        ``spk_id`` (``Ses01F``), ``dialog``, ``kind``, ``code`` (consensus
        code written), ``audio`` (``{class: weight}`` of the tones mixed),
        ``evaluators`` and ``votes`` (the ``C-E*`` names and their category
        lists), ``self_votes`` (``(name, categories)`` or None), ``wav``
        (absolute path), ``num_samples``, ``speech`` and ``silences``
        (``(start, end)`` sample intervals, end exclusive, that partition
        the utterance).

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> truth = make_iemocap_corpus(tmp, utts_per_speaker=2, sessions=(1,))
    >>> sorted(truth["utterances"])[:2]
    ['Ses01F_impro01_F000', 'Ses01F_impro01_M000']
    >>> u = truth["utterances"]["Ses01F_impro01_F000"]
    >>> u["spk_id"], u["silences"][0][0], u["speech"][-1][1] < u["num_samples"]
    ('Ses01F', 0, True)
    """
    root = os.path.abspath(os.fspath(root))
    if min_dur < 0.5 or max_dur < min_dur:
        raise ValueError(
            f"need 0.5 <= min_dur <= max_dur, got {min_dur}, {max_dur}"
        )
    unknown = sorted(set(kinds) - set(KIND_TO_CODE))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known: {KIND_TO_CODE}")
    rng = np.random.default_rng(seed)
    utterances = {}
    jobs = []
    for session in sessions:
        dialogs = _dialog_names(session, dialogs_per_session)
        plan = {d: [] for d in dialogs}
        for gender in ("F", "M"):
            spk_kinds = [
                kinds[i % len(kinds)] for i in range(utts_per_speaker)
            ]
            rng.shuffle(spk_kinds)
            for i, kind in enumerate(spk_kinds):
                plan[dialogs[i % len(dialogs)]].append((gender, kind))
        for dialog in dialogs:
            # Speakers take turns in a dialog, as in the release.
            f_turns = [t for t in plan[dialog] if t[0] == "F"]
            m_turns = [t for t in plan[dialog] if t[0] == "M"]
            ordered = []
            while f_turns or m_turns:
                if f_turns:
                    ordered.append(f_turns.pop(0))
                if m_turns:
                    ordered.append(m_turns.pop(0))
            counters = {"F": 0, "M": 0}
            blocks = []
            clock = 2.0 + float(rng.uniform(0, 2))
            for gender, kind in ordered:
                utt_id = f"{dialog}_{gender}{counters[gender]:03d}"
                counters[gender] += 1
                info = _plan_utterance(
                    rng, utt_id, session, dialog, gender, kind,
                    min_dur, max_dur, sample_rate,
                )
                info["wav"] = os.path.join(
                    root, f"Session{session}", "sentences", "wav", dialog,
                    utt_id + ".wav",
                )
                start = clock
                end = start + info["num_samples"] / sample_rate
                clock = end + float(rng.uniform(0.2, 1.5))
                blocks.append((start, end, info))
                utterances[utt_id] = info
                jobs.append(
                    (info["wav"], info, sample_rate, silence_level,
                     noise_level, seed, len(jobs))
                )
            _write_emo_evaluation(root, session, dialog, blocks, junk)
    _write_audio(jobs, num_workers)
    if junk:
        for info in utterances.values():
            folder, name = os.path.split(info["wav"])
            _write_apple_double(os.path.join(folder, "._" + name))
    return {
        "root": root,
        "sample_rate": sample_rate,
        "utterances": utterances,
    }


def _dialog_names(session, n):
    """Dialog names of a session: alternating improvised and scripted."""
    names = []
    for i in range(n):
        who = "F" if i % 2 == 0 else "M"
        if i % 2 == 0:
            names.append(f"Ses{session:02d}{who}_impro{i // 2 + 1:02d}")
        else:
            names.append(f"Ses{session:02d}{who}_script{i // 2 + 1:02d}_1")
    return names


def _plan_utterance(
    rng, utt_id, session, dialog, gender, kind, min_dur, max_dur, sr
):
    """Draw votes, audio mixture, duration and silences of one utterance."""
    code = KIND_TO_CODE[kind]
    evaluators, votes, audio = _votes_for(rng, kind, session)
    self_votes = None
    if rng.uniform() < 0.5:
        # The actor's own evaluation, sometimes disagreeing with the others.
        own = kind if kind in _CATEGORY else "neu"
        if rng.uniform() < 0.5:
            own = _FOUR[int(rng.integers(4))]
        self_votes = (f"C-{gender}1", [_CATEGORY[own][0]])
    num_samples = int(round(float(rng.uniform(min_dur, max_dur)) * sr))
    lead = int(rng.uniform(0.1, 0.25) * sr)
    trail = int(rng.uniform(0.1, 0.25) * sr)
    speech_len = num_samples - lead - trail
    if speech_len >= int(1.0 * sr):
        pause = int(rng.uniform(0.15, 0.3) * sr)
        first = int(rng.uniform(0.3, 0.7) * (speech_len - pause))
        speech = [
            (lead, lead + first),
            (lead + first + pause, num_samples - trail),
        ]
    else:
        speech = [(lead, num_samples - trail)]
    silences = []
    cursor = 0
    for s, e in speech:
        silences.append((cursor, s))
        cursor = e
    silences.append((cursor, num_samples))
    return {
        "id": utt_id,
        "session": session,
        "spk_id": f"Ses{session:02d}{gender}",
        "dialog": dialog,
        "kind": kind,
        "code": code,
        "audio": audio,
        "evaluators": evaluators,
        "votes": votes,
        "self_votes": self_votes,
        "num_samples": num_samples,
        "speech": speech,
        "silences": silences,
    }


def _votes_for(rng, kind, session):
    """Three external evaluators' category lists for one utterance kind."""
    pool = ("C-E1", "C-E2", "C-E3", "C-E4", "C-E5", "C-E6")
    offset = (session - 1) % 4
    evaluators = list(pool[offset : offset + 3])
    other = _OTHER_CATEGORIES[int(rng.integers(len(_OTHER_CATEGORIES)))]
    pattern = int(rng.integers(4))
    if kind in ("neu", "hap", "exc", "sad", "ang"):
        names = _CATEGORY[kind]
        main = names[int(rng.integers(len(names)))]
        if kind in ("hap", "exc") and pattern == 3:
            votes = [["Happiness"], ["Excited"], ["Happiness", "Excited"]]
        elif pattern == 1:
            votes = [[main], [main], [main, other]]
        elif pattern == 2:
            votes = [[main], [main], [other]]
        else:
            votes = [[main], [main], [main]]
        audio = {"hap" if kind == "exc" else kind: 1.0}
    elif kind == "amb":
        a, b = rng.choice(len(_FOUR), size=2, replace=False)
        a, b = _FOUR[int(a)], _FOUR[int(b)]
        ca, cb = _CATEGORY[a][0], _CATEGORY[b][0]
        if pattern == 0:
            # 4-class mass exactly at the default threshold (1.5 of 3).
            votes = [[ca, other], [cb], [other]]
        elif pattern == 1:
            votes = [[ca], [ca, other], [cb]]
        else:
            votes = [[ca], [cb], [other]]
        audio = {a: 0.5, b: 0.5}
    elif kind == "amb_low":
        a = _FOUR[int(rng.integers(len(_FOUR)))]
        votes = [[_CATEGORY[a][0]], ["Frustration"], ["Surprise"]]
        audio = {"other": 0.7, a: 0.3}
    else:
        main = _CATEGORY[kind][0]
        votes = [[main], [main], [_CATEGORY["ang"][0]]]
        audio = {"other": 1.0}
    return evaluators, votes, audio


def _format_c_line(name, categories, rng_bit, comment):
    """One ``C-`` line, with or without the trailing ``;``."""
    text = "; ".join(categories) + ("" if rng_bit else ";")
    return f"{name}:\t{text}\t({comment})"


def _write_emo_evaluation(root, session, dialog, blocks, junk):
    """Write one dialog's EmoEvaluation file (and the clutter beside it)."""
    folder = os.path.join(root, f"Session{session}", "dialog", "EmoEvaluation")
    os.makedirs(folder, exist_ok=True)
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    vad = {"neu": "2.5000, 2.5000, 2.5000", "ang": "1.5000, 4.0000, 4.0000"}
    for k, (start, end, info) in enumerate(blocks):
        code = info["code"]
        lines.append(
            f"[{start:.4f} - {end:.4f}]\t{info['id']}\t{code}"
            f"\t[{vad.get(code, '3.0000, 3.0000, 2.5000')}]"
        )
        pairs = zip(info["evaluators"], info["votes"])
        for j, (name, cats) in enumerate(pairs):
            comment = "" if (j + k) % 3 else "curious"
            lines.append(_format_c_line(name, cats, (j + k) % 3 == 1, comment))
        if info["self_votes"] is not None:
            name, cats = info["self_votes"]
            lines.append(_format_c_line(name, cats, False, ""))
        for name in info["evaluators"][1:]:
            lines.append(f"A-{name[2:]}:\tval 3; act 2; dom  2;\t()")
        lines.append("")
    with open(os.path.join(folder, dialog + ".txt"), "w") as fout:
        fout.write("\n".join(lines) + "\n")
    if not junk:
        return
    _write_apple_double(os.path.join(folder, "._" + dialog + ".txt"))
    for sub, suffix in (
        ("Categorical", "_e2_cat.txt"),
        ("Attribute", "_e2_atr.txt"),
        ("Self-evaluation", "_e3_cat.txt"),
    ):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        with open(os.path.join(folder, sub, dialog + suffix), "w") as fout:
            for _, _, info in blocks:
                fout.write(f"{info['id']} :Neutral state; ()\n")


def _write_apple_double(path):
    """A macOS AppleDouble resource file: binary junk with a real name."""
    with open(path, "wb") as fout:
        fout.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
        fout.write(bytes(range(256)) * 4)


def _write_audio(jobs, num_workers):
    """Synthesise and write every utterance, in parallel if asked."""
    for path, *_ in jobs:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    if num_workers <= 1:
        for job in jobs:
            _synthesise_and_write(job)
        return
    with ProcessPoolExecutor(num_workers) as pool:
        list(pool.map(_synthesise_and_write, jobs, chunksize=32))


def _synthesise_and_write(job):
    """Worker: one utterance's audio to its wav file."""
    path, info, sr, silence_level, noise_level, seed, index = job
    wav = synthesise(info, sr, silence_level, noise_level, seed, index)
    sf.write(path, wav, sr, subtype="PCM_16")


def synthesise(info, sr, silence_level, noise_level, seed, index):
    """Audio of one planned utterance (deterministic given its index).

    Arguments
    ---------
    info : dict
        An entry of ``make_iemocap_corpus``'s ``utterances``.
    sr : int
        Sample rate.
    silence_level, noise_level : float
        As in ``make_iemocap_corpus``.
    seed, index : int
        Corpus seed and the utterance's position: its random stream.

    Returns
    -------
    numpy.ndarray
        ``[time]`` float32 waveform in [-1, 1].

    Example
    -------
    >>> info = {"num_samples": 800, "speech": [(200, 600)],
    ...         "audio": {"ang": 1.0}, "spk_id": "Ses01F"}
    >>> wav = synthesise(info, 16000, 0.0, 0.0, 0, 0)
    >>> wav.shape, float(abs(wav[:200]).max())
    ((800,), 0.0)
    >>> bool(abs(wav[200:600]).max() > 0.1)
    True
    """
    rng = np.random.default_rng([seed, index])
    n = info["num_samples"]
    if silence_level > 0:
        wav = (silence_level * rng.standard_normal(n)).astype(np.float32)
    else:
        wav = np.zeros(n, dtype=np.float32)
    pitch = _SPEAKER_PITCH[info["spk_id"][-1]] * float(rng.uniform(0.97, 1.03))
    gain = float(rng.uniform(0.8, 1.2))
    for s, e in info["speech"]:
        seg = np.zeros(e - s, dtype=np.float32)
        for cls, weight in info["audio"].items():
            seg += weight * _tone(_TIMBRE[cls], e - s, sr, pitch)
        if noise_level > 0:
            seg += (noise_level * rng.standard_normal(e - s)).astype(np.float32)
        wav[s:e] = gain * seg
    np.clip(wav, -0.99, 0.99, out=wav)
    return wav


def _tone(timbre, n, sr, pitch):
    """A harmonic tone with the class's contour, envelope and tremolo."""
    t = np.arange(n, dtype=np.float64) / sr
    f0 = timbre["f0"] * pitch * (1.0 + timbre["glide"] * t / max(t[-1], 1e-9))
    phase = (2 * np.pi / sr) * np.cumsum(f0)
    s1 = np.sin(phase).astype(np.float32)
    c1 = np.cos(phase).astype(np.float32)
    harm = timbre["harm"]
    out = harm[0] * s1
    prev, cur = np.zeros_like(s1), s1
    for a in harm[1:]:
        # sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x)
        prev, cur = cur, 2 * c1 * cur - prev
        out += a * cur
    out *= timbre["amp"] / sum(harm)
    env = np.ones(n, dtype=np.float32)
    if timbre["trem"] > 0:
        env -= timbre["trem"] * (
            0.5 + 0.5 * np.sin(2 * np.pi * timbre["trem_hz"] * t)
        ).astype(np.float32)
    ramp = min(int(0.01 * sr), n // 2)
    if ramp > 0:
        r = np.linspace(0.0, 1.0, ramp, dtype=np.float32)
        env[:ramp] *= r
        env[n - ramp :] *= r[::-1]
    return out * env


def speech_like_recording(seconds, seed=0, sample_rate=16000):
    """A speech-like recording and its utterance boundaries.

    Arguments
    ---------
    seconds : float
        Length.
    seed : int
        Random seed.
    sample_rate : int
        Sample rate.

    Returns
    -------
    wav : numpy.ndarray
        ``[time]`` float32 at 16 kHz.
    utterances : list of (int, int)
        Sample ``(start, stop)`` of each voiced utterance.
    """
    rng = np.random.default_rng(seed)
    total = int(seconds * sample_rate)
    wav = (1e-3 * rng.standard_normal(total)).astype("float32")
    utterances, pos = [], int(0.2 * sample_rate)
    while pos < total:
        n = min(int(rng.uniform(2.0, 7.0) * sample_rate), total - pos)
        if n < sample_rate // 2:
            break
        t = np.arange(n) / sample_rate
        f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform())
        wav[pos : pos + n] += (0.1 * voice * syllables).astype("float32")
        utterances.append((pos, pos + n))
        pos += n + int(rng.uniform(0.2, 0.6) * sample_rate)
    return wav, utterances


def write_recording_and_clips(workdir, seconds, sample_rate=16000):
    """Write the recording and its utterances as clips; their paths.

    Arguments
    ---------
    workdir : str
        Output folder (``audio/`` is written there).
    seconds : float
        Recording length.
    sample_rate : int
        Sample rate.

    Returns
    -------
    (str, list of str)
        The recording and the clip files.
    """
    folder = os.path.join(workdir, "audio")
    os.makedirs(folder, exist_ok=True)
    wav, utterances = speech_like_recording(seconds, sample_rate=sample_rate)
    recording = os.path.join(folder, f"recording_{seconds:g}s.wav")
    sf.write(recording, wav, sample_rate)
    clips = []
    for i, (start, stop) in enumerate(utterances):
        path = os.path.join(folder, f"clip_{i:03d}.wav")
        sf.write(path, wav[start:stop], sample_rate)
        clips.append(path)
    return recording, clips
