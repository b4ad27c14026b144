"""The multi-process tests' run (``test_ddp.py``): one fold or a
cross-validation, recording what each rank trains on.

Under ``torchrun`` it runs as a script (``python ddp_worker.py MODE OUT
HPARAMS --key=value ...``) and ends as ``train.py`` and ``amser-sb cv``
end there; the one-process reference calls :func:`run` in the test's own
process. Each rank writes ``groups_rank{r}.json`` (the optimiser's groups)
and ``seen_rank{r}.json`` (``[epoch, ["utt@start", ...]]`` of every
training batch); with ``CRASH_EPOCH`` set it exits with status 3 when that
epoch begins (a "kill").
"""

import json
import os
import sys
import traceback


def run(mode, out, hparams_file, args, rank=0, crash_epoch=0):
    """One fold (``mode`` "fold", ``args`` as ``--key=value``) or ``amser-sb
    cv`` (``mode`` "cv", ``args`` its command line after the hparams file),
    with the recording hooks; the hooks are removed afterwards.

    Returns
    -------
    int
        The exit status (0: done; 3: killed; 1: failed, traceback printed).
    """
    from amser_sb.training import cv
    from amser_sb.training import run as run_module
    from amser_sb.training.brain import AMSERBrain

    real_fit_batch = AMSERBrain.fit_batch
    real_init = AMSERBrain.init_optimizers
    seen = []

    def recording_fit_batch(self, batch):
        epoch = self.hparams.epoch_counter.current
        if epoch == crash_epoch:
            raise SystemExit(3)  # killed
        items = [f"{u}@{s}" for u, s in zip(batch.utt_id,
                                            batch.seg_start.tolist())]
        seen.append([epoch, items])
        return real_fit_batch(self, batch)

    def recording_init(self):
        real_init(self)
        groups = [{"name": g.get("name"), "lr": g["lr"],
                   "n_params": len(g["params"])}
                  for g in self.optimizer.param_groups]
        with open(os.path.join(out, f"groups_rank{rank}.json"), "w") as f:
            json.dump({"groups": groups,
                       "find_unused": bool(self.find_unused_parameters)}, f)

    AMSERBrain.fit_batch = recording_fit_batch
    AMSERBrain.init_optimizers = recording_init
    status = 0
    try:
        if mode == "fold":
            overrides = "\n".join(a[2:].replace("=", ": ", 1) for a in args)
            run_module.run_fold(
                hparams_file, {"device": "cpu", "noprogressbar": True},
                overrides,
            )
        else:
            cv.run_cv([hparams_file, "--device=cpu", "--noprogressbar",
                       *args])
    except SystemExit as exc:
        status = exc.code
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        AMSERBrain.fit_batch = real_fit_batch
        AMSERBrain.init_optimizers = real_init
        with open(os.path.join(out, f"seen_rank{rank}.json"), "w") as f:
            json.dump(seen, f)
    return status


if __name__ == "__main__":
    from amser_sb.training.distributed import exit_process

    mode, out, hparams_file, *args = sys.argv[1:]
    status = run(mode, out, hparams_file, args,
                 rank=int(os.environ.get("RANK", 0)),
                 crash_epoch=int(os.environ.get("CRASH_EPOCH", 0)))
    # as train.py and amser-sb cv end under torchrun
    exit_process(status)
    sys.exit(status)
