"""The ``--device`` of a run exists on this machine.

Without this check ``--device=cuda:0`` on a machine without a GPU ends in
a ``Found no NVIDIA driver`` traceback from the first tensor moved there,
after the data preparation.

Authors
 * amser-sb contributors
"""

import torch

from amser_sb.core.errors import AmserUserError


class DeviceError(AmserUserError, ValueError):
    """A ``--device`` this machine does not have."""


def device_problem(device):
    """Why ``device`` cannot be used here, or None.

    Arguments
    ---------
    device : str or None
        SpeechBrain's ``--device`` (None: SpeechBrain's default).

    Returns
    -------
    str or None

    Example
    -------
    >>> device_problem("cpu") is None
    True
    >>> device_problem("gpu")
    "--device='gpu' is not a torch device; use --device=cpu or --device=cuda:0"
    """
    if device is None:
        return None
    try:
        parsed = torch.device(str(device))
    except (RuntimeError, ValueError):
        return (f"--device={device!r} is not a torch device; use "
                "--device=cpu or --device=cuda:0")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return (f"--device={device}: this machine has no usable CUDA GPU "
                    "(torch.cuda.is_available() is False); use --device=cpu")
        if parsed.index is not None and parsed.index >= count:
            return (f"--device={device}: this machine has {count} CUDA "
                    f"GPU(s), cuda:0 to cuda:{count - 1}; choose one of them")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        return f"--device={device}: MPS is not available here; use --device=cpu"
    return None


def check_device(run_opts):
    """Refuse a run whose ``device`` option this machine does not have.

    Arguments
    ---------
    run_opts : dict or speechbrain.utils.run_opts.RunOptions or None
        SpeechBrain's run options.

    Raises
    ------
    DeviceError
        Naming the option and the fix.
    """
    device = (run_opts or {}).get("device")
    problem = device_problem(device)
    if problem is not None:
        raise DeviceError(problem)
