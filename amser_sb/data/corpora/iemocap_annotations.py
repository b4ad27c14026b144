"""IEMOCAP's annotations: EmoEvaluation files and what their votes mean.

Reads the ``IEMOCAP_full_release`` annotation layout::

    <data_folder>/SessionN/dialog/EmoEvaluation/<dialog>.txt

(:func:`find_emo_evaluation_files`, :func:`parse_emo_evaluation`) and
decides each utterance's label (:func:`label_utterance`; the paper's
multi-label learning, :mod:`amser_sb.core.labels`): a clear utterance has a
consensus code of the class set (``exc`` merges into ``hap``); an
ambiguous one has ``xxx`` and is kept iff at least ``ambiguous_min_mass``
of its vote mass is on the classes. Soft targets come from the ``C-E*``
votes (self-evaluations ``C-F*``/``C-M*`` only with
``include_self_evaluation``); a clear utterance without in-set votes gets
its consensus one-hot.

Files that are not annotations are ignored: macOS AppleDouble ``._*``
files and the ``Categorical/``, ``Attribute/``, ``Self-evaluation/``
subfolders. A malformed annotation line is an :class:`AnnotationError`
naming the file and line. The preparation that uses them is
:func:`amser_sb.data.corpora.iemocap.prepare_iemocap`.

Authors
 * amser-sb contributors
"""

import os
import re
from dataclasses import dataclass, field

from amser_sb.core.errors import AmserUserError
from amser_sb.core.labels import IEMOCAP_4, soft_targets, vote_mass

SESSIONS = (1, 2, 3, 4, 5)

_HEADER = re.compile(
    r"^\[\s*(?P<start>[-+0-9.eE]+)\s*-\s*(?P<end>[-+0-9.eE]+)\s*\]\s+"
    r"(?P<utt>\S+)\s+(?P<code>\S+)\s+\[(?P<vad>[^\]]*)\]\s*$"
)
_CAT_KEY = re.compile(r"^C-(?P<who>[A-Za-z]+)(?P<num>\d*)$")
_UTT_ID = re.compile(r"^(?P<ses>Ses\d\d)[FM]_.+_(?P<gender>[FM])[A-Za-z]*\d+$")


class AnnotationError(AmserUserError, ValueError):
    """A malformed line in an EmoEvaluation file (names file and line)."""


@dataclass
class Utterance:
    """One annotated utterance of an EmoEvaluation file.

    Arguments
    ---------
    id : str
        Utterance ID, e.g. ``Ses01F_impro01_F000``.
    session : int
        Session number.
    spk_id : str
        Speaker, e.g. ``Ses01F`` (session and the gender letter of the
        utterance ID's last part, the person speaking).
    dialog : str
        Dialog (the wav subfolder), e.g. ``Ses01F_impro01``.
    start, end : float
        Turn times in the dialog, seconds.
    code : str
        Consensus code (``neu``, ``exc``, ``xxx``, ...).
    vad : str
        The ``[V, A, D]`` text as written.
    votes : list of (str, list of str)
        External evaluators' ``(name, categories)``.
    self_votes : list of (str, list of str)
        Self-evaluations (``C-F1``, ``C-M1``, ...).
    source : str
        ``<file>:<line>`` of the header line.
    """

    id: str
    session: int
    spk_id: str
    dialog: str
    start: float
    end: float
    code: str
    vad: str = ""
    votes: list = field(default_factory=list)
    self_votes: list = field(default_factory=list)
    source: str = ""


def parse_emo_evaluation(path, session):
    """Parse one EmoEvaluation file.

    Arguments
    ---------
    path : str
        ``SessionN/dialog/EmoEvaluation/<dialog>.txt``.
    session : int
        Its session number.

    Returns
    -------
    list of Utterance
        In file order.

    Raises
    ------
    AnnotationError
        On a line that is neither a header, a ``C-``/``A-`` line, a ``%``
        comment nor blank, or on a malformed header or ``C-`` line; the
        message names ``file:line`` and the fix.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "Ses01F_impro01.txt")
    >>> _ = open(p, "w").write(
    ...     "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\\n\\n"
    ...     "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t"
    ...     "[2.5000, 2.5000, 2.5000]\\n"
    ...     "C-E2:\\tNeutral;\\t()\\n"
    ...     "C-E3:\\tNeutral; Frustration\\t(curious)\\n"
    ...     "C-F1:\\tNeutral;\\t()\\n"
    ...     "A-E3:\\tval 3; act 2; dom  2;\\t()\\n\\n")
    >>> (u,) = parse_emo_evaluation(p, 1)
    >>> u.id, u.spk_id, u.code, u.votes
    ('Ses01F_impro01_F000', 'Ses01F', 'neu', [('C-E2', ['Neutral']), \
('C-E3', ['Neutral', 'Frustration'])])
    >>> u.self_votes
    [('C-F1', ['Neutral'])]
    """
    utterances = []
    current = None
    with open(path, encoding="utf-8", errors="replace") as fin:
        for lineno, raw in enumerate(fin, start=1):
            line = raw.rstrip("\r\n")
            text = line.strip()
            where = f"{path}:{lineno}"
            if not text:
                current = None
                continue
            if text.startswith("%"):
                continue
            if text.startswith("["):
                current = _parse_header(text, where, session)
                utterances.append(current)
                continue
            if current is None:
                raise AnnotationError(
                    f"{where}: line outside an utterance block: {text!r}. "
                    "Each block must start with '[start - end]<TAB>utt_id"
                    "<TAB>code<TAB>[V, A, D]'; fix or delete the line."
                )
            if text.startswith("C-"):
                name, categories = _parse_categorical(text, where)
                who = _CAT_KEY.match(name).group("who")
                if who.upper() == "E":
                    current.votes.append((name, categories))
                else:
                    current.self_votes.append((name, categories))
            elif text.startswith("A-"):
                continue  # dimensional ratings: not used
            else:
                raise AnnotationError(
                    f"{where}: unexpected line {text!r} in the block of "
                    f"{current.id}: expected a 'C-' or 'A-' evaluation "
                    "line or a blank line; fix or delete the line."
                )
    return utterances


def _parse_header(text, where, session):
    """Parse ``[start - end]<TAB>utt<TAB>code<TAB>[V, A, D]``."""
    match = _HEADER.match(text)
    if match is None:
        raise AnnotationError(
            f"{where}: malformed utterance header {text!r}; expected "
            "'[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>"
            "[2.5000, 2.5000, 2.5000]'. Fix the line or restore the file "
            "from the release."
        )
    utt = match.group("utt")
    id_match = _UTT_ID.match(utt)
    if id_match is None or id_match.group("ses") != f"Ses{session:02d}":
        raise AnnotationError(
            f"{where}: utterance ID {utt!r} is not an IEMOCAP ID of "
            f"Session{session} (like 'Ses{session:02d}F_impro01_F000'); "
            "is the file in the right SessionN folder?"
        )
    try:
        start, end = float(match.group("start")), float(match.group("end"))
    except ValueError:
        raise AnnotationError(
            f"{where}: unreadable turn times in {text!r}"
        ) from None
    return Utterance(
        id=utt,
        session=session,
        spk_id=id_match.group("ses") + id_match.group("gender"),
        dialog=utt.rsplit("_", 1)[0],
        start=start,
        end=end,
        code=match.group("code").lower(),
        vad=match.group("vad").strip(),
        source=where,
    )


def _parse_categorical(text, where):
    """Parse ``C-E2:<TAB>Cat1; Cat2;<TAB>(comment)`` -> (name, cats)."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or _CAT_KEY.match(name) is None:
        raise AnnotationError(
            f"{where}: malformed categorical line {text!r}; expected "
            "'C-E2:<TAB>Neutral;<TAB>()'. Fix the line or restore the file "
            "from the release."
        )
    if "\t" in rest:
        # Release form: categories, then "(comment)", tab-separated.
        fields = [f.strip() for f in rest.split("\t") if f.strip()]
        cats_text = fields[0] if fields else ""
        if cats_text.startswith("("):
            cats_text = ""  # only a comment: no category listed
    else:
        # Space-separated variant: drop a trailing "(comment)".
        cats_text = re.sub(r"\([^()]*\)\s*$", "", rest)
    categories = [c.strip() for c in cats_text.split(";") if c.strip()]
    return name, categories


def find_emo_evaluation_files(data_folder, sessions=SESSIONS):
    """The annotation files of each session, checking the layout.

    Only ``SessionN/dialog/EmoEvaluation/*.txt`` count: AppleDouble
    ``._*`` files and the evaluator subfolders are ignored.

    Arguments
    ---------
    data_folder : str
        The ``IEMOCAP_full_release`` folder.
    sessions : sequence of int
        Sessions to read.

    Returns
    -------
    list of (int, str)
        ``(session, path)`` sorted.

    Raises
    ------
    FileNotFoundError
        If a session's ``dialog/EmoEvaluation`` folder is missing or holds
        no annotation file (naming the folder and the expected layout).
    """
    found = []
    for session in sessions:
        folder = os.path.join(
            data_folder, f"Session{session}", "dialog", "EmoEvaluation"
        )
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"IEMOCAP: {folder} not found. --data_folder must be the "
                "IEMOCAP_full_release folder holding Session1 ... Session5 "
                "(each with dialog/EmoEvaluation/*.txt and "
                f"sentences/wav/<dialog>/*.wav); sessions asked: "
                f"{list(sessions)}."
            )
        files = sorted(
            os.path.join(folder, name)
            for name in os.listdir(folder)
            if name.endswith(".txt")
            and not name.startswith("._")
            and os.path.isfile(os.path.join(folder, name))
        )
        if not files:
            raise FileNotFoundError(
                f"IEMOCAP: no annotation file (<dialog>.txt) in {folder}; "
                "is the release complete?"
            )
        found.extend((session, path) for path in files)
    return found



def label_utterance(
    utt,
    class_set=IEMOCAP_4,
    ambiguous_min_mass=0.5,
    include_self_evaluation=False,
    use_ambiguous=True,
):
    """Decide an utterance's label, soft target and whether it is used.

    Arguments
    ---------
    utt : Utterance
        A parsed utterance.
    class_set : amser_sb.core.labels.ClassSet
        Classes and label maps.
    ambiguous_min_mass : float
        Keep an ambiguous utterance iff its in-set vote mass is at least
        this share of its total vote mass.
    include_self_evaluation : bool
        Count the actors' self-evaluations as votes.
    use_ambiguous : bool
        Use kept ambiguous utterances (in train).

    Returns
    -------
    dict
        ``emo`` (class or ""), ``ambiguous`` (0/1), ``soft`` (list of
        floats, zeros if undefined), ``reason`` (None if used, else the
        skip reason) and ``detail``.

    Example
    -------
    >>> u = Utterance("Ses01F_impro01_F000", 1, "Ses01F", "Ses01F_impro01",
    ...               0.0, 1.0, "xxx",
    ...               votes=[("C-E1", ["Anger"]), ("C-E2", ["Sadness"]),
    ...                      ("C-E3", ["Frustration"])])
    >>> lab = label_utterance(u)
    >>> lab["emo"], lab["ambiguous"], lab["soft"], lab["reason"]
    ('', 1, [0.0, 0.0, 0.5, 0.5], None)
    """
    votes = [cats for _, cats in utt.votes]
    if include_self_evaluation:
        votes += [cats for _, cats in utt.self_votes]
    mass, total = vote_mass(votes, class_set)
    in_set = float(sum(mass))
    soft = soft_targets(mass)
    out = {"emo": "", "ambiguous": 0, "reason": None, "detail": ""}
    cls = class_set.code_to_class(utt.code)
    if cls is not None:
        out["emo"] = cls
        out["soft"] = soft or class_set.one_hot(cls)
        return out
    out["soft"] = soft or [0.0] * len(class_set)
    if class_set.is_ambiguous(utt.code):
        out["ambiguous"] = 1
        share = in_set / total if total > 0 else 0.0
        if share < ambiguous_min_mass:
            out["reason"] = "ambiguous below threshold"
            out["detail"] = (
                f"{share:.3f} of the vote mass on {list(class_set.names)} "
                f"< ambiguous_min_mass={ambiguous_min_mass}"
            )
        elif not use_ambiguous:
            out["reason"] = "ambiguous not used"
            out["detail"] = "use_ambiguous=False"
        return out
    out["reason"] = "excluded class"
    out["detail"] = f"consensus {utt.code!r} not in {list(class_set.names)}"
    return out
