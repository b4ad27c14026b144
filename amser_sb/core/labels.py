"""Emotion class sets and soft targets from annotators' votes.

A :class:`ClassSet` fixes the class order (the label encoder's order, never
the order in which labels happen to appear in the data) and says how a
corpus's consensus codes and annotators' category names map onto the
classes. :data:`IEMOCAP_4` is the paper's set: ``neu, hap, sad, ang``, with
the consensus ``exc`` (excited) merged into ``hap``.

Soft targets are the paper's "emotional proportion labels": each evaluator
splits one vote equally over the categories it listed; categories outside
the class set go to ``other``; the in-set mass, normalised to sum 1, is the
target (see :func:`vote_mass` and :func:`soft_targets`).

Authors
 * amser-sb contributors
"""

import os
import re

_OTHER_WITH_TEXT = re.compile(r"^other\s*:.*$")


def normalize_category(name):
    """Canonical form of an evaluator's category name.

    Lower case, inner whitespace collapsed, and the release's free-text
    variant ``Other:<text>`` reduced to ``other``.

    Arguments
    ---------
    name : str
        A category as written in an annotation line, e.g. ``"Neutral state"``.

    Returns
    -------
    str

    Example
    -------
    >>> normalize_category("  Neutral   state ")
    'neutral state'
    >>> normalize_category("Other:pride")
    'other'
    """
    text = " ".join(str(name).split()).lower()
    if _OTHER_WITH_TEXT.match(text):
        return "other"
    return text


class ClassSet:
    """An ordered set of emotion classes and the corpus labels mapped to it.

    Arguments
    ---------
    names : sequence of str
        Class names in their fixed order (the label encoder's indices).
    code_map : dict
        Consensus code -> class name, e.g. ``{"exc": "hap"}``; codes not in
        the map are outside the set (excluded).
    category_map : dict
        Evaluator category name (any case) -> class name; categories not in
        the map count as ``other``.
    ambiguous_codes : sequence of str
        Consensus codes that mean "no majority" (IEMOCAP: ``xxx``).

    Example
    -------
    >>> cs = ClassSet(["pos", "neg"], {"p": "pos", "n": "neg"},
    ...               {"Happy": "pos", "Sad": "neg"})
    >>> cs.soft_columns
    ['soft_pos', 'soft_neg']
    >>> cs.code_to_class("p"), cs.category_to_class("happy"), cs.index("neg")
    ('pos', 'pos', 1)
    >>> cs.category_to_class("Bored") is None
    True
    """

    def __init__(self, names, code_map, category_map, ambiguous_codes=()):
        self.names = tuple(names)
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError(f"class names must be unique, got {names}")
        for mapping, what in ((code_map, "code"), (category_map, "category")):
            bad = sorted(set(mapping.values()) - set(self.names))
            if bad:
                raise ValueError(
                    f"{what} map targets {bad}, not in the classes {names}"
                )
        self.code_map = dict(code_map)
        self.category_map = {
            normalize_category(k): v for k, v in category_map.items()
        }
        self.ambiguous_codes = tuple(ambiguous_codes)

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return f"ClassSet({list(self.names)})"

    @property
    def soft_columns(self):
        """Manifest column names of the soft targets, in class order."""
        return [f"soft_{name}" for name in self.names]

    def index(self, name):
        """Index of a class name (its label-encoder index)."""
        return self.names.index(name)

    def code_to_class(self, code):
        """Class of a consensus code, or None if outside the set."""
        return self.code_map.get(code)

    def is_ambiguous(self, code):
        """True if the consensus code means "no majority"."""
        return code in self.ambiguous_codes

    def category_to_class(self, category):
        """Class of an evaluator's category name, or None (``other``)."""
        return self.category_map.get(normalize_category(category))

    def one_hot(self, name):
        """One-hot target of a class, as a list of floats."""
        target = [0.0] * len(self.names)
        target[self.index(name)] = 1.0
        return target

    def describe(self):
        """A JSON-able description (for idempotency stamps)."""
        return {
            "names": list(self.names),
            "code_map": dict(sorted(self.code_map.items())),
            "category_map": dict(sorted(self.category_map.items())),
            "ambiguous_codes": list(self.ambiguous_codes),
        }

    def write_label_encoder(self, path):
        """Write the classes in SpeechBrain's ``CategoricalEncoder`` format.

        The file loads with ``CategoricalEncoder.load_if_possible`` and
        gives each class its index in ``names``.

        Arguments
        ---------
        path : str or os.PathLike
            Output file, usually ``<save_folder>/label_encoder.txt``.

        Example
        -------
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "label_encoder.txt")
        >>> IEMOCAP_4.write_label_encoder(path)
        >>> print(open(path).read().splitlines()[0])
        'neu' => 0
        """
        lines = [f"{name!r} => {i}" for i, name in enumerate(self.names)]
        lines += ["================", "'starting_index' => 0"]
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fout:
            fout.write("\n".join(lines) + "\n")
        os.replace(tmp, path)


#: IEMOCAP, 4 classes (the paper's set): excited merges into happiness.
IEMOCAP_4 = ClassSet(
    names=("neu", "hap", "sad", "ang"),
    code_map={"neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad",
              "ang": "ang"},
    category_map={
        "Neutral": "neu",
        "Neutral state": "neu",
        "Happiness": "hap",
        "Excited": "hap",
        "Sadness": "sad",
        "Anger": "ang",
    },
    ambiguous_codes=("xxx",),
)


def vote_mass(votes, class_set):
    """Per-class vote mass: each evaluator splits one vote over its list.

    Arguments
    ---------
    votes : sequence of sequence of str
        One category list per evaluator (as written; repeated names within
        one evaluator's list count once). Evaluators with an empty list
        cast no vote.
    class_set : ClassSet
        Classes to count; everything else is ``other``.

    Returns
    -------
    mass : list of float
        Vote mass of each class, in class order.
    total : float
        Total mass (the number of evaluators that voted), ``other``
        included.

    Example
    -------
    >>> vote_mass([["Neutral"], ["Neutral state", "Frustration"],
    ...            ["Excited", "Other:sarcastic"]], IEMOCAP_4)
    ([1.5, 0.5, 0.0, 0.0], 3.0)
    """
    mass = [0.0] * len(class_set)
    total = 0.0
    for categories in votes:
        unique = list(dict.fromkeys(normalize_category(c) for c in categories))
        unique = [c for c in unique if c]
        if not unique:
            continue
        total += 1.0
        share = 1.0 / len(unique)
        for category in unique:
            cls = class_set.category_to_class(category)
            if cls is not None:
                mass[class_set.index(cls)] += share
    return mass, total


def soft_targets(mass, fallback=None, class_set=None):
    """Normalise per-class vote mass to a distribution.

    Arguments
    ---------
    mass : sequence of float
        Per-class vote mass (see :func:`vote_mass`).
    fallback : str, optional
        Class whose one-hot is returned when the mass sums to 0 (a clear
        utterance's consensus); needs ``class_set``.
    class_set : ClassSet, optional
        The classes ``mass`` is over.

    Returns
    -------
    list of float or None
        Sums to 1; None when the mass is 0 and there is no fallback.

    Example
    -------
    >>> soft_targets([1.5, 0.5, 0.0, 0.0])
    [0.75, 0.25, 0.0, 0.0]
    >>> soft_targets([0.0] * 4, fallback="sad", class_set=IEMOCAP_4)
    [0.0, 0.0, 1.0, 0.0]
    """
    total = float(sum(mass))
    if total > 0:
        return [float(m) / total for m in mass]
    if fallback is None:
        return None
    if class_set is None:
        raise ValueError("soft_targets: a fallback class needs class_set")
    return class_set.one_hot(fallback)
