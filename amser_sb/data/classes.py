"""The class vocabulary of the corpora and the choice of a class set.

Every corpus maps its own emotion codes onto these class names (``neu hap
sad ang`` as in IEMOCAP, plus ``fea`` fear, ``dis`` disgust, ``sur``
surprise, ``cal`` calm, ``bor`` boredom). The class set of a preparation is
an option, not fixed to IEMOCAP's four (:func:`select_classes`), and the
order of the classes never depends on which label appears first in the
data (:data:`CLASS_ORDER`).

Authors
 * amser-sb contributors
"""

import re

from amser_sb.core.errors import AmserUserError


class ClassChoiceError(AmserUserError, ValueError):
    """A ``classes`` or ``label_map`` option that cannot be used."""


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

_CLASS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def ordered_classes(classes):
    """Classes in :data:`CLASS_ORDER`, unknown names after them, sorted.

    Arguments
    ---------
    classes : iterable of str
        Class names.

    Returns
    -------
    list of str

    Example
    -------
    >>> ordered_classes({"zzz", "ang", "neu", "aaa"})
    ['neu', 'ang', 'aaa', 'zzz']
    """
    classes = set(classes)
    known = [c for c in CLASS_ORDER if c in classes]
    return known + sorted(c for c in classes if c not in CLASS_ORDER)


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
                raise ClassChoiceError(
                    f"label_map entry {token!r} is not 'code=class'; write "
                    "the map as 'code=class,code=class', e.g. "
                    "'W=ang,F=hap,T=sad,N=neu'"
                )
            code, cls = (part.strip() for part in token.split("="))
            items.append((code, cls))
    out = {}
    for code, cls in items:
        if not code or not _CLASS_NAME.match(str(cls)):
            raise ClassChoiceError(
                f"label_map entry {code!r}={cls!r}: codes must be non-empty "
                "and class names letters, digits, '_' or '-' (they become "
                "the manifest's soft_<class> columns)"
            )
        out[str(code)] = str(cls)
    return out


def parse_classes(classes):
    """Normalise the ``classes`` option: None, a keyword, or a list.

    Arguments
    ---------
    classes : None, str or sequence of str
        As given (``"native"``, ``"iemocap"``, ``"a,b"`` or a list).

    Returns
    -------
    str or list of str
        ``"native"``, ``"iemocap"`` or the distinct names.

    Example
    -------
    >>> parse_classes(None), parse_classes(" IEMOCAP "), parse_classes("a,b")
    ('native', 'iemocap', ['a', 'b'])
    """
    if classes is None:
        return "native"
    if isinstance(classes, str):
        if classes.strip().lower() in ("native", "iemocap"):
            return classes.strip().lower()
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ClassChoiceError(
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
    choice = parse_classes(classes)
    available = ordered_classes(available)
    lacking = [c for c in IEMOCAP_CLASSES if c not in available]
    if choice == "native":
        names = available
    elif choice == "iemocap":
        names = [c for c in IEMOCAP_CLASSES if c in available]
    else:
        names = choice
        missing = [c for c in choice if c not in available]
        if missing:
            raise ClassChoiceError(
                f"classes {missing} are not in {corpus} (it has "
                f"{available}); choose among those, or map codes onto them "
                "with label_map='code=class,...'"
            )
    if len(names) < 2:
        raise ClassChoiceError(
            f"{corpus}: the class set {names} has fewer than 2 classes "
            f"(available: {available}); choose another set"
        )
    return names, lacking
