"""Multi-process (DDP) training: process group, unwrapping, even shards.

SpeechBrain trains on several GPUs (or CPU processes) with PyTorch's
``DistributedDataParallel`` when a script is started by ``torchrun``::

    torchrun --standalone --nproc_per_node=4 train.py hparams/... ...

What this module adds to SpeechBrain 1.1.2's support:

- :func:`init_distributed`: ``sb.utils.distributed.ddp_init_group`` once
  (idempotent), after choosing a backend that can run: ``nccl`` needs CUDA,
  so a CPU run (``--device=cpu``, or no GPU) uses ``gloo``; each process
  gets its own GPU (``cuda:<LOCAL_RANK>``) even when ``--device=cuda:0``
  was given to all of them.
- :func:`exit_process`: the end of a torchrun process (group left, logs
  flushed, ``os._exit``), so that gloo's teardown in the interpreter's
  finalisation cannot abort a finished run.
- :func:`unwrap`: the model inside a ``DistributedDataParallel`` (or
  ``DataParallel``) wrapper, to reach its branches.
- :class:`ShardedBatchSampler`: every process gets its share of the *same*
  batches a single process would draw (same order, same seed), so one
  epoch sees every training item exactly once across the processes (no
  padding with repeated items, unlike ``DistributedSampler``), and
  :func:`share_weight` scales each process's loss so that the averaged
  gradient is the one-process gradient of the whole batch, also for a
  last batch that does not split evenly.

Authors
 * amser-sb contributors 2026
"""

import atexit
import dataclasses
import logging
import os
import sys

import speechbrain as sb
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "ShardedBatchSampler",
    "exit_process",
    "init_distributed",
    "is_distributed",
    "share_weight",
    "unwrap",
    "world_size",
]


def unwrap(module):
    """The module inside a DDP / DataParallel wrapper (else ``module``).

    Arguments
    ---------
    module : torch.nn.Module
        A module, possibly wrapped.

    Returns
    -------
    torch.nn.Module
        ``module.module`` for a wrapper, ``module`` itself otherwise.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 2)
    >>> unwrap(torch.nn.DataParallel(lin)) is lin, unwrap(lin) is lin
    (True, True)
    """
    wrappers = (
        torch.nn.parallel.DistributedDataParallel,
        torch.nn.DataParallel,
    )
    while isinstance(module, wrappers):
        module = module.module
    return module


def is_distributed():
    """Whether a process group is initialised (a ``torchrun`` run).

    Example
    -------
    >>> is_distributed()
    False
    """
    return sb.utils.distributed.is_distributed_initialized()


def world_size():
    """Number of processes (1 without a process group).

    Example
    -------
    >>> world_size()
    1
    """
    if not is_distributed():
        return 1
    return torch.distributed.get_world_size()


def _set_option(run_opts, key, value):
    """A run option set: in place on a dict, a changed copy of a
    SpeechBrain ``RunOptions`` (a frozen dataclass), marked as given."""
    if isinstance(run_opts, dict):
        run_opts[key] = value
        return run_opts
    overridden = set(getattr(run_opts, "overridden_args", ())) | {key}
    return dataclasses.replace(
        run_opts, **{key: value, "overridden_args": overridden}
    )


def init_distributed(run_opts):
    """Joins the process group of a ``torchrun`` launch (once).

    Does nothing without ``torchrun`` (no ``RANK``/``LOCAL_RANK`` in the
    environment) or when the group exists already. Otherwise fixes the run
    options so that the launch can work, then calls
    ``sb.utils.distributed.ddp_init_group``:

    - backend ``nccl`` (SpeechBrain's default) on a CPU run becomes
      ``gloo`` (``nccl`` needs CUDA), with a log line;
    - device ``cuda`` or ``cuda:<k>`` becomes ``cuda:<LOCAL_RANK>`` (one GPU
      per process; every process on ``cuda:0`` would share one GPU).

    Arguments
    ---------
    run_opts : dict or speechbrain.utils.run_opts.RunOptions
        SpeechBrain's run options (``sb.parse_arguments``).

    Returns
    -------
    dict or RunOptions
        The run options to build the Brain with (a dict is changed in
        place; a ``RunOptions``, which is frozen, is replaced by a copy).

    Raises
    ------
    ValueError
        For ``--distributed_backend=nccl`` on a CPU run.

    Example
    -------
    >>> init_distributed({"device": "cpu"})  # no torchrun: nothing to do
    {'device': 'cpu'}
    """
    local_rank = os.environ.get("LOCAL_RANK")
    if os.environ.get("RANK") is None or local_rank is None:
        return run_opts
    if is_distributed():
        return run_opts
    device = run_opts.get("device") or (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    backend = run_opts.get("distributed_backend") or "nccl"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device={device} but CUDA is not available: run on CPU "
                "with --device=cpu (backend gloo)"
            )
        wanted = f"cuda:{int(local_rank)}"
        if run_opts.get("device") not in (None, wanted):
            logger.info(
                "distributed: --device=%s replaced by %s (one GPU per "
                "process, from LOCAL_RANK)", device, wanted,
            )
            run_opts = _set_option(run_opts, "device", wanted)
    elif backend == "nccl":
        given = getattr(run_opts, "overridden_args", ())
        explicit = run_opts.get("distributed_backend") is not None and (
            isinstance(run_opts, dict) or "distributed_backend" in given
        )
        if explicit:
            raise ValueError(
                f"--distributed_backend=nccl needs CUDA, but the device is "
                f"{device!r}: use --distributed_backend=gloo on CPU"
            )
        logger.info("distributed: CPU run, backend gloo (nccl needs CUDA)")
        run_opts = _set_option(run_opts, "distributed_backend", "gloo")
        run_opts = _set_option(run_opts, "device", "cpu")
    if isinstance(run_opts, dict):
        run_opts.setdefault("distributed_backend", backend)
    sb.utils.distributed.ddp_init_group(run_opts)
    # leave the group before the interpreter exits: a gloo group torn down
    # in interpreter finalisation can abort the process ("terminate called
    # without an active exception", SIGABRT) after a successful run
    atexit.register(leave_process_group)
    logger.info(
        "distributed: rank %s of %d, device %s, backend %s",
        os.environ["RANK"], world_size(), run_opts.get("device") or device,
        run_opts["distributed_backend"],
    )
    return run_opts


def wrap_trainable_modules(modules, device, find_unused_parameters):
    """Wraps each module that has trainable parameters in DDP, in place.

    BatchNorm becomes ``SyncBatchNorm`` on CUDA only: on CPU (``gloo``) it
    cannot run, so each process normalises with its own batch statistics
    and DDP keeps the running statistics of process 0. Modules without a
    trainable parameter, or already wrapped, are left as they are.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        The Brain's modules (changed in place).
    device : str or torch.device
        The process's device.
    find_unused_parameters : bool
        DDP's option of that name.
    """
    on_cuda = str(device).startswith("cuda")
    if not on_cuda:
        logger.info(
            "distributed: device %s, BatchNorm statistics per process "
            "(SyncBatchNorm needs CUDA)", device,
        )
    DDP = torch.nn.parallel.DistributedDataParallel
    for name, module in modules.items():
        if not any(p.requires_grad for p in module.parameters()):
            continue
        if isinstance(module, DDP):
            continue
        if on_cuda:
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        modules[name] = DDP(
            module,
            device_ids=[device] if on_cuda else None,
            find_unused_parameters=find_unused_parameters,
        )


def exit_process(status=0):
    """End a ``torchrun`` process now, with exit status ``status``
    (``sys.exit``'s argument: None, an int or a message); without a
    process group it returns and the caller exits as usual.

    A gloo group whose last reference goes in the interpreter's
    finalisation (the DDP wrappers of a Brain hold it, and
    ``destroy_process_group`` drops only the library's own references)
    can abort the process at exit ("terminate called without an active
    exception", SIGABRT), at random, after a successful run, and torchrun
    then reports the run as failed. So the process leaves the group,
    flushes its logs and output and ends with ``os._exit``, skipping that
    finalisation. After a success the processes first wait for each other,
    so that none closes its connections while another still uses them.

    Arguments
    ---------
    status : None, int or str
        As for ``sys.exit``: None is 0; a message is printed to stderr and
        gives status 1.

    Example
    -------
    >>> exit_process(0)  # no torchrun: returns
    """
    if not is_distributed():
        return
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:
        print(status, file=sys.stderr)
        code = 1
    try:
        if code == 0:
            torch.distributed.barrier()
        leave_process_group()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def leave_process_group():
    """Destroys the process group this process joined (no-op without one).

    Example
    -------
    >>> leave_process_group()  # no torchrun: nothing to do
    """
    if is_distributed():
        torch.distributed.destroy_process_group()


def share_weight(mass, device="cpu"):
    """Scale of one process's mean loss in a distributed step.

    DDP averages the processes' gradients. When process ``r`` holds a loss
    normalised by its own mass ``m_r`` (items, or class-weighted targets),
    multiplying it by ``world * m_r / sum(m)`` makes the average the
    gradient of the whole batch's mean loss, as one process would compute
    it. 1 without a process group.

    Arguments
    ---------
    mass : float
        This process's normaliser of its mean loss (e.g. its batch size).
    device : str or torch.device
        Device of the all-reduced tensor (CUDA for ``nccl``).

    Returns
    -------
    float
        The factor.

    Example
    -------
    >>> share_weight(3.0)
    1.0
    """
    if not is_distributed():
        return 1.0
    total = torch.tensor([float(mass)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return world_size() * float(mass) / max(float(total.item()), 1e-12)


class ShardedBatchSampler(torch.utils.data.Sampler):
    """One process's share of the batches a single process would draw.

    ``sampler`` gives the order of one epoch (e.g. a
    ``ReproducibleRandomSampler`` with SpeechBrain's seed, exactly as a
    one-process run shuffles). Consecutive runs of ``batch_size *
    world_size`` items are the global batches; process ``rank`` takes the
    items ``rank, rank + world_size, ...`` of each. With per-process batch
    ``B / N`` on ``N`` processes the global batches are the one-process
    batches of size ``B``.

    The last global batch (fewer items) is split as evenly as possible.
    When it has fewer items than processes, it is merged with the one
    before and the two are cut in halves, so that every process has an
    item in every step (DDP needs the same number of steps on all
    processes) and no item is repeated or dropped. ``drop_last`` drops an
    incomplete last global batch, as a one-process ``drop_last`` does.

    Arguments
    ---------
    sampler : torch.utils.data.Sampler or sequence of int
        The epoch's order of dataset indices.
    batch_size : int
        Items per process and step.
    rank : int, optional
        This process (default: from the process group, else 0).
    world_size : int, optional
        Number of processes (default: from the process group, else 1).
    drop_last : bool
        Drop an incomplete last global batch.

    Example
    -------
    >>> shards = [list(ShardedBatchSampler(range(10), 2, rank=r, world_size=2))
    ...           for r in (0, 1)]
    >>> shards[0]
    [[0, 2], [4, 6], [8]]
    >>> shards[1]
    [[1, 3], [5, 7], [9]]
    >>> list(ShardedBatchSampler(range(9), 2, rank=1, world_size=2))
    [[1, 3], [5], [8]]
    """

    def __init__(self, sampler, batch_size, rank=None, world_size=None,
                 drop_last=False):
        if rank is None:
            rank = torch.distributed.get_rank() if is_distributed() else 0
        if world_size is None:
            world_size = (
                torch.distributed.get_world_size() if is_distributed() else 1
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)

    def set_epoch(self, epoch):
        """Passes the epoch to the order sampler (a new shuffle)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def steps(self, n_items):
        """``(start, stop)`` positions of each global batch in the order.

        Arguments
        ---------
        n_items : int
            Items in the epoch.

        Returns
        -------
        list of tuple
            One ``(start, stop)`` a step.
        """
        world, size = self.world_size, self.batch_size * self.world_size
        full, rest = divmod(int(n_items), size)
        bounds = [(k * size, (k + 1) * size) for k in range(full)]
        if rest == 0 or self.drop_last:
            if not bounds:
                raise ValueError(
                    f"{n_items} training items make no complete batch of "
                    f"{self.batch_size} x {world} processes with drop_last: "
                    "lower batch_size or drop_last"
                )
            return bounds
        if rest >= world:
            return bounds + [(full * size, n_items)]
        tail = size + rest
        if not bounds or tail < 2 * world:
            raise ValueError(
                f"{n_items} training items cannot be split into steps "
                f"that give each of {world} processes at least one item "
                f"with batch_size {self.batch_size}: use batch_size >= 2 "
                "or fewer processes"
            )
        start = bounds[-1][0]
        middle = start + (tail + 1) // 2
        return bounds[:-1] + [(start, middle), (middle, n_items)]

    def __iter__(self):
        order = list(iter(self.sampler))
        for start, stop in self.steps(len(order)):
            yield order[start:stop][self.rank :: self.world_size]

    def __len__(self):
        return len(self.steps(len(self.sampler)))
