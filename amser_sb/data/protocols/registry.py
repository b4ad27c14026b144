"""Protocols: one registered class per way of cutting a corpus into folds.

A protocol knows its title and what a fold tests (for the results), how
many folds it has for a corpus (when the hparams alone tell), what the
data must offer (its check) and its split. The corpora
(:mod:`amser_sb.data.corpora`), ``amser-sb cv``'s results and the recipe's
fold check all ask the protocol here instead of testing its name.

Built in: ``speaker`` (leave one speaker out), ``session`` (leave one
IEMOCAP session out) and ``grouped`` (folds of whole recording groups,
when speakers are unknown).

**A new protocol** (e.g. a corpus's official split, or leave one session
out with a validation speaker) is one :class:`Protocol` subclass in a new
module of this package, listed in :data:`PROTOCOL_MODULES`: set ``name``,
``title``, ``test_unit`` and ``test_column``, implement :meth:`Protocol.split`
(with the strategies of :mod:`amser_sb.data.protocols.splits` or your
own) and, where you can, :meth:`Protocol.fold_count`; then add its name to
the ``protocols`` of the corpora that offer it.

Authors
 * amser-sb contributors
"""

import importlib

from amser_sb.core.errors import AmserUserError

#: Modules whose import registers the built-in protocols.
PROTOCOL_MODULES = (
    "amser_sb.data.protocols.speaker",
    "amser_sb.data.protocols.session",
    "amser_sb.data.protocols.grouped",
)

_PROTOCOLS = {}


class ProtocolError(AmserUserError, ValueError):
    """An unknown protocol, or data the protocol cannot split."""


class Protocol:
    """A fold protocol: title, fold count, checks and split.

    A subclass that sets ``name`` is instantiated and registered when it
    is defined.

    Attributes
    ----------
    name : str
        The registry key (``--protocol``, the sub-folder of the
        preparation's save folder).
    title : str
        Heading of the results.
    test_unit : str
        What one fold tests (the results' ``Test <unit>`` column).
    test_column : str
        The manifest column that holds it.

    Example
    -------
    >>> class Official(Protocol):
    ...     name = "official-example"
    ...     title = "the corpus's official split"
    ...     test_unit = "split"
    ...     test_column = "group"
    ...     def split(self, rows, **options):
    ...         return []
    >>> get_protocol("official-example").title
    "the corpus's official split"
    >>> unregister("official-example")
    """

    name = None
    title = ""
    test_unit = "group"
    test_column = "group"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register(cls())

    def split(self, rows, **options):
        """The folds of used manifest rows.

        Arguments
        ---------
        rows : list of dict
            Manifest rows (``ID``, ``spk_id``, ``group``, ``emo``,
            ``ambiguous``).
        **options
            The protocol's options (seed, valid share, ...).

        Returns
        -------
        list of amser_sb.data.protocols.splits.Fold
        """
        raise NotImplementedError

    def speaker_key(self, rows):
        """The speaker column the folds are disjoint on, or None.

        Arguments
        ---------
        rows : list of dict

        Returns
        -------
        str or None
            ``spk_id`` by default (checked by ``write_folds``).
        """
        return "spk_id"

    def check(self, speakers, groups, speakers_known=True,
              corpus="the corpus"):
        """Raise :class:`ProtocolError` when the data cannot be split.

        Arguments
        ---------
        speakers : sequence of str
            The speakers of the used rows.
        groups : sequence of str
            Their recording groups.
        speakers_known : bool
            Whether the corpus names its speakers.
        corpus : str
            Name used in messages.
        """

    def fold_count(self, counts, hparams):
        """How many folds, if known before the preparation.

        Arguments
        ---------
        counts : dict
            What the corpus knows from the hparams alone
            (:meth:`amser_sb.data.corpora.registry.Corpus.known_counts`:
            ``speakers``, ``groups``, ``scope``; None when unknown).
        hparams : dict
            Loaded recipe hparams.

        Returns
        -------
        count : int or None
        scope : str or None
            What the count is of, for messages.
        """
        return None, None

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def register(protocol):
    """Add a protocol to the registry (its ``name`` is the key).

    Arguments
    ---------
    protocol : Protocol

    Returns
    -------
    Protocol
    """
    key = str(protocol.name).lower()
    if key in _PROTOCOLS and type(_PROTOCOLS[key]) is not type(protocol):
        raise ValueError(
            f"protocol {key!r} is already registered by "
            f"{type(_PROTOCOLS[key]).__name__}"
        )
    _PROTOCOLS[key] = protocol
    return protocol


def unregister(name):
    """Remove a protocol from the registry (tests, plugins).

    Arguments
    ---------
    name : str
    """
    _PROTOCOLS.pop(str(name).lower(), None)


def _load_builtin():
    for module in PROTOCOL_MODULES:
        importlib.import_module(module)


def protocol_names():
    """The registered protocol names.

    Returns
    -------
    list of str

    Example
    -------
    >>> protocol_names()[:3]
    ['speaker', 'session', 'grouped']
    """
    _load_builtin()
    builtin = [m.rsplit(".", 1)[1] for m in PROTOCOL_MODULES]
    return sorted(_PROTOCOLS, key=lambda name: (
        builtin.index(name) if name in builtin else len(builtin), name))


def get_protocol(name):
    """The protocol registered under ``name`` (case-insensitive).

    Arguments
    ---------
    name : str

    Returns
    -------
    Protocol

    Raises
    ------
    ProtocolError
        For an unknown name, listing the known ones.

    Example
    -------
    >>> get_protocol("session").title
    'leave-one-session-out'
    """
    _load_builtin()
    key = str(name).lower()
    if key not in _PROTOCOLS:
        raise ProtocolError(
            f"unknown protocol {name!r}: use one of "
            f"{', '.join(protocol_names())}"
        )
    return _PROTOCOLS[key]


def find_protocol(name):
    """The registered protocol, or None (e.g. a folder of an old run).

    Arguments
    ---------
    name : str

    Returns
    -------
    Protocol or None
    """
    _load_builtin()
    return _PROTOCOLS.get(str(name).lower())
