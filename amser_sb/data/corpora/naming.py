"""File names to labels: a preset's convention or the user's expressions.

:class:`CustomNaming` holds a corpus given by user regular expressions
(``preset="custom"``: ``label_regex``, ``speaker_regex``, ``group_regex``,
``label_map``); :func:`naming_for` picks a preset
(:mod:`amser_sb.data.corpora.presets`) or a custom naming, and
:func:`check_name` applies it to one file path (no audio is read).

Authors
 * amser-sb contributors
"""

import os
import re

from amser_sb.data.classes import parse_label_map
from amser_sb.data.corpora.presets import CUSTOM, PRESETS, preset_names
from amser_sb.data.manifest import skipped_row


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


def naming_for(preset, label_regex, speaker_regex, group_regex, label_map):
    """The naming convention and full code map of a preset or custom run.

    Arguments
    ---------
    preset : str or None
        A name of :data:`PRESETS`, or ``"custom"`` / None (the regular
        expressions).
    label_regex, speaker_regex, group_regex : str or None
        Custom mode's expressions (see :class:`CustomNaming`).
    label_map : str or dict or None
        ``"code=class,..."``: overrides or extends a preset's code map; the
        custom map.

    Returns
    -------
    naming : CorpusPreset or CustomNaming
    code_map : dict or None
        Code -> class (None: custom without a map, each code its class).

    Example
    -------
    >>> naming, code_map = naming_for("ravdess", None, None, None, "02=neu")
    >>> naming.name, code_map["02"], code_map["01"]
    ('ravdess', 'neu', 'neu')
    """
    overrides = parse_label_map(label_map)
    if preset is None or preset == CUSTOM:
        naming = CustomNaming(label_regex, speaker_regex, group_regex)
        code_map = overrides or None
        return naming, code_map
    key = str(preset).lower()
    if key == "iemocap":
        raise ValueError(
            "IEMOCAP has its own preparation (labels from EmoEvaluation "
            "files): amser_sb.data.corpora.iemocap.prepare_iemocap, or amser-sb "
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
        code_map[naming.cased_code(code)] = cls
    return naming, code_map


def check_name(naming, path, rel, code_map):
    """Parse a file name and check its fields (no audio is read).

    Arguments
    ---------
    naming : CorpusPreset or CustomNaming
        The naming convention.
    path : str
        Absolute path of the file.
    rel : str
        Its path relative to the data folder, ``/`` separators.
    code_map : dict or None
        Code -> class (None: any code is accepted).

    Returns
    -------
    fields : dict or None
        Parsed fields when the name is usable.
    skip : dict or None
        The ``skipped.csv`` row otherwise.

    Example
    -------
    >>> preset = PRESETS["emodb"]
    >>> fields, skip = check_name(preset, "/d/03a01Fa.wav", "03a01Fa.wav",
    ...                           preset.code_map)
    >>> fields["label"], skip
    ('F', None)
    >>> check_name(preset, "/d/x.wav", "x.wav", preset.code_map)[1]["reason"]
    'no pattern match'
    """
    hidden = [p for p in rel.split("/")
              if p.startswith(".") or p == "__MACOSX"]
    if hidden:
        return None, skipped_row(
            path, "hidden file",
            f"{rel}: hidden ({hidden[0]}: e.g. a macOS ._* AppleDouble "
            "copy or __MACOSX/ folder of a zip archive)",
        )
    parts = rel.split("/")[:-1]
    excluded = [p for p in parts if p.lower() in naming.exclude_dirs]
    if excluded:
        return None, skipped_row(
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
        return None, skipped_row(path, "no pattern match", why)
    speaker, group, code = fields["speaker"], fields["group"], fields["label"]
    for key, (allowed, why) in naming.require.items():
        if fields.get(key) not in allowed:
            return None, skipped_row(
                path, "field value not used",
                f"{rel}: {key} {fields.get(key)!r}: {why}",
                speaker=speaker, group=group, code=code,
            )
    if naming.speakers_known:
        if speaker is None:
            return None, skipped_row(
                path, "unknown speaker",
                f"{rel}: speaker_regex finds no speaker", code=code,
            )
        if naming.speakers and speaker not in naming.speakers:
            return None, skipped_row(
                path, "unknown speaker",
                f"{rel}: speaker {speaker!r} is not one of the corpus's "
                f"speakers {list(naming.speakers)}",
                speaker=speaker, group=group, code=code,
            )
    if code_map is not None and code not in code_map:
        return None, skipped_row(
            path, "unknown code",
            f"{rel}: emotion code {code!r} is not in the label map "
            f"{sorted(code_map)}; add it with label_map='{code}=<class>'",
            speaker=speaker, group=group, code=code,
        )
    return fields, None
