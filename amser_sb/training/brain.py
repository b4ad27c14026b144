"""The training loop of the emotion recipe: :class:`AMSERBrain`.

``AMSERBrain`` trains ``modules.embedding_model`` (an
:class:`amser_sb.lobes.AMSER`: AM-ResNet and/or wav2vec 2.0, fused) and
``modules.classifier`` (an :class:`amser_sb.lobes.EmotionClassifier`) on
segments (see :mod:`amser_sb.training.pipeline`) with the soft-target cross-entropy
(:mod:`amser_sb.core.losses`), scores valid and test per utterance (softmax of
the mean segment log-probability, :mod:`amser_sb.core.metrics`), keeps the
checkpoint with the best valid UA, and resumes interrupted runs from the
latest checkpoint.

Optional behaviour, all driven by the hparams:

- ``use_feature_cache`` (with a frozen wav2vec2): backbone outputs come
  from :class:`amser_sb.training.feature_cache.FeatureCache` (computed once per
  segment, on disk under ``feature_cache_folder``). With
  ``freeze_am_resnet`` too (the paper's stage 2), AM-ResNet's outputs are
  cached the same way (keyed also by the voiced mask), so an epoch only
  trains fusion and classifier. With ``ssl_finetune_layers: k`` (wav2vec2
  family) the cache holds the hidden states below the fine-tuned top
  ``k`` layers, which run live from them.
- ``lr_ssl`` (with a fine-tuned wav2vec2): the backbone's weights (only
  the top ``k`` layers with ``ssl_finetune_layers: k``) are a second
  parameter group of the one optimiser, with that rate.
- the paper's **two-stage schedule**: stage 1 trains AM-ResNet alone
  (``hparams/am_resnet.yaml``, SGD); stage 2 (``am_resnet_w2v2.yaml`` with
  ``stage1_folder`` set) loads AM-ResNet's weights from stage 1's best
  checkpoint and, with ``freeze_am_resnet``, trains fusion + classifier
  only (Adam).
- ``class_weights``: ``null``, ``balanced`` (inverse class frequency of the
  training targets) or a list in label-encoder order.

Authors
 * amser-sb contributors 2026
"""

import json
import logging
import os
import time

import speechbrain as sb
import torch

from amser_sb.core.atomic_write import atomic_open
from amser_sb.training.distributed import (
    ShardedBatchSampler,
    share_weight,
    unwrap,
    world_size,
    wrap_trainable_modules,
)
from amser_sb.training.class_weights import class_weights
from amser_sb.training.cache_choice import am_resnet_cache, encoder_cache
from amser_sb.training.schedulers import anneal_epoch
from amser_sb.training.stage_one import load_stage_one
from amser_sb.core.losses import soft_target_cross_entropy
from amser_sb.core.metrics import ClassificationStats

logger = logging.getLogger(__name__)

__all__ = ["AMSERBrain"]

#: Runs a writer on the main process only; every process gets its result.
write_once = sb.utils.distributed.main_process_only


class AMSERBrain(sb.Brain):
    """Brain for AM-ResNet + wav2vec 2.0 emotion recognition.

    Expects in the hparams: ``label_encoder`` (loaded), ``output_folder``,
    ``train_logger``, ``label_smoothing``, ``save_valid_confusion``; with
    a fine-tuned encoder ``lr_ssl``, with ``use_feature_cache``
    ``feature_cache_dtype``. Optional features, off when the YAML lacks
    them: ``lr_annealing``, ``class_weights``, ``freeze_am_resnet``,
    ``cudnn_benchmark``,
    ``stage1_folder``, ``use_feature_cache``, ``feature_cache_folder``.
    The YAML is the one source of every value (see
    ``recipes/IEMOCAP/emotion_recognition/hparams/am_resnet_w2v2.yaml``);
    nothing here has a default of its own.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        encoder = self.hparams.label_encoder
        if len(encoder) == 0:
            raise ValueError(
                "label_encoder is empty: load label_encoder.txt (e.g. with "
                "amser_sb.training.pipeline.dataio_prep) before building the Brain"
            )
        self.labels = [encoder.ind2lab[i] for i in range(len(encoder))]
        self.class_weights = None
        self.feature_cache = encoder_cache(
            self._hparam("use_feature_cache"), self.ssl_backbone,
            self._hparam("feature_cache_folder")
            or os.path.join(self.hparams.output_folder, "feature_cache"),
            self._hparam("feature_cache_dtype"),
        )
        self.am_cache = am_resnet_cache(
            self.feature_cache, self.embedding_model,
            self._hparam("freeze_am_resnet"),
        )
        self.test_summary = None
        self._stage_start = None

    # ------------------------------------------------------------------
    # Set-up helpers
    # ------------------------------------------------------------------
    def _hparam(self, name):
        """An optional feature's hparam; None (off) when the YAML lacks it."""
        return getattr(self.hparams, name, None)

    @property
    def embedding_model(self):
        """The ``AMSER`` model itself, also inside a DDP wrapper.

        Under ``torchrun`` SpeechBrain wraps ``modules.embedding_model`` in
        ``DistributedDataParallel``; its branches live on the wrapped
        module. Forward passes still go through ``self.modules`` (the
        wrapper synchronises the gradients).
        """
        return unwrap(self.modules.embedding_model)

    @property
    def ssl_backbone(self):
        """The encoder branch (a ``SpeechEncoder``) of the model, or None."""
        return getattr(self.embedding_model, "ssl", None)

    @property
    def am_resnet(self):
        """The AM-ResNet branch of the embedding model, or None."""
        return getattr(self.embedding_model, "am_resnet", None)

    def load_stage1(self):
        """Loads AM-ResNet's weights from the stage-1 run (two-stage mode).

        ``stage1_folder`` is stage 1's output folder for this fold (it may
        contain ``{fold}``, ``{protocol}`` and ``{seed}``, filled from the
        hparams); the checkpoint with the best valid UA in its ``save/``
        sub-folder is used. Only the ``am_resnet.*`` weights of its
        ``embedding_model`` are taken.

        Returns
        -------
        str or None
            The checkpoint folder loaded, or None when ``stage1_folder`` is
            not set.
        """
        folder = self._hparam("stage1_folder")
        if not folder:
            return None
        folder = str(folder).format(
            fold=self._hparam("fold"),
            protocol=self._hparam("protocol"),
            seed=self._hparam("seed"),
        )
        return load_stage_one(folder, self.am_resnet)

    def _freeze_am_resnet(self):
        """With ``freeze_am_resnet``: no gradients and frozen BatchNorm."""
        if self._hparam("freeze_am_resnet") and self.am_resnet:
            for param in self.am_resnet.parameters():
                param.requires_grad_(False)
            self.am_resnet.eval()

    # ------------------------------------------------------------------
    # Brain interface
    # ------------------------------------------------------------------
    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """Sets class weights from the training targets, then trains.

        Arguments
        ---------
        epoch_counter : speechbrain.utils.epoch_loop.EpochCounter
            Iterates the epochs (checkpointed, so training resumes).
        train_set : DynamicItemDataset or DataLoader
            Training segments (see :mod:`amser_sb.training.pipeline`).
        valid_set : DynamicItemDataset or DataLoader, optional
            Validation segments.
        **kwargs : dict
            Passed to ``sb.Brain.fit`` (loader options, progressbar).
        """
        self.class_weights = self._compute_class_weights(train_set)
        super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def _compute_class_weights(self, train_set):
        """Class weights from the ``class_weights`` hparam.

        Arguments
        ---------
        train_set : DynamicItemDataset or DataLoader
            For ``balanced``: whose ``soft`` targets are counted.

        Returns
        -------
        torch.Tensor or None
            ``[n_classes]`` weights on the Brain's device.
        """
        weights = class_weights(self._hparam("class_weights"), train_set,
                                self.labels)
        return None if weights is None else weights.to(self.device)

    def on_fit_start(self):
        """Loads stage-1 weights and freezes AM-ResNet if asked, then
        builds the optimiser and resumes from the latest checkpoint (the
        latter two as ``sb.Brain.on_fit_start``).

        A resumed run's checkpoint, when there is one, overrides the
        stage-1 weights.
        """
        self.load_stage1()
        self._freeze_am_resnet()
        self.save_encoder_options()
        if self._hparam("cudnn_benchmark"):
            # Fixed training shapes: let cuDNN time its algorithms once.
            torch.backends.cudnn.benchmark = True
        super().on_fit_start()

    @sb.utils.distributed.main_process_only
    def save_encoder_options(self):
        """Write ``<output_folder>/encoder.json``: how export rebuilds the
        encoder branch offline (its ``export_options()``)."""
        encoder = self.ssl_backbone
        folder = self._hparam("output_folder")
        if encoder is None or folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "encoder.json")
        with atomic_open(path, encoding="utf-8") as handle:
            json.dump(encoder.export_options(), handle, indent=2,
                      sort_keys=True)

    def init_optimizers(self):
        """Builds one optimiser with up to two parameter groups.

        Group ``model``: every trainable parameter outside the pretrained
        encoder, at the optimiser's ``lr``. Group ``ssl`` (only when the
        encoder is fine-tuned): ``SpeechEncoder.encoder_parameters()`` at
        ``lr_ssl``. Learned layer weights of the encoder branch, which live
        outside the pretrained network, belong to ``model``.
        """
        if self.opt_class is None:
            logger.info("no opt_class: skipping optimiser initialisation")
            return
        encoder = self.ssl_backbone
        ssl_params = [] if encoder is None else encoder.encoder_parameters()
        backbone_ids = {id(p) for p in ssl_params}
        model_params = [
            p
            for p in self.modules.parameters()
            if p.requires_grad and id(p) not in backbone_ids
        ]
        groups = [{"params": model_params, "name": "model"}]
        if ssl_params:
            groups.append(
                {
                    "params": ssl_params,
                    "lr": self.hparams.lr_ssl,
                    "name": "ssl",
                }
            )
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    # ------------------------------------------------------------------
    # Multi-process training (torchrun)
    # ------------------------------------------------------------------
    def _unused_parameters_expected(self):
        """Whether a DDP step may leave trainable parameters without a
        gradient (DDP then needs ``find_unused_parameters``).

        A fine-tuned pretrained encoder does: Hugging Face models hold
        parameters their forward does not use (e.g. wav2vec2's
        ``masked_spec_embed`` without SpecAugment) and a partly frozen one
        (``freeze_feature_extractor``) mixes both. Branches an ablation
        ``mode`` leaves out are not built (``AMSER``), frozen parameters
        get no gradient by design and are not registered with DDP.

        Returns
        -------
        bool
        """
        encoder = self.ssl_backbone
        return encoder is not None and bool(encoder.encoder_parameters())

    def _wrap_distributed(self):
        """Wraps the trainable modules in DDP (``torchrun`` runs).

        As ``sb.Brain._wrap_distributed``, except: BatchNorm becomes
        ``SyncBatchNorm`` on CUDA only (``wrap_trainable_modules``); and
        ``find_unused_parameters`` is switched on where the configuration
        needs it (see ``_unused_parameters_expected``) unless given.
        """
        if not self.distributed_launch:
            return super()._wrap_distributed()
        if not self.find_unused_parameters:
            self.find_unused_parameters = self._unused_parameters_expected()
            if self.find_unused_parameters:
                logger.info(
                    "distributed: find_unused_parameters on (a fine-tuned "
                    "encoder has parameters without gradients)"
                )
        wrap_trainable_modules(self.modules, self.device,
                               self.find_unused_parameters)

    def _train_loader_specifics(self, dataset, loader_kwargs):
        """Training batches; under DDP, shares of the one-process batches.

        With ``torchrun``, fixed-size batches (``batch_size`` items *per
        process*) come from :class:`amser_sb.training.distributed.ShardedBatchSampler`
        over the order a single process would use (SpeechBrain's
        ``ReproducibleRandomSampler`` with its seed when shuffling): every
        item is seen exactly once per epoch across the processes, and
        ``N`` processes with batch ``B / N`` step on the batches of one
        process with batch ``B``. A given ``sampler`` or ``batch_sampler``
        (dynamic batching) goes to SpeechBrain's own handling.
        """
        if (
            not self.distributed_launch
            or loader_kwargs.get("sampler") is not None
            or loader_kwargs.get("batch_sampler") is not None
            or isinstance(dataset, torch.utils.data.IterableDataset)
        ):
            return super()._train_loader_specifics(dataset, loader_kwargs)
        loader_kwargs = dict(loader_kwargs)
        shuffle = loader_kwargs.pop("shuffle", False)
        batch_size = loader_kwargs.pop("batch_size", 1)
        drop_last = loader_kwargs.pop("drop_last", False)
        if shuffle:
            # What sb.Brain uses for one process, so the order is the same.
            seed = os.environ.get("SB_GLOBAL_SEED", 563375142)
            order = sb.dataio.sampler.ReproducibleRandomSampler(
                dataset, seed=seed
            )
        else:
            order = torch.utils.data.SequentialSampler(dataset)
        self.train_sampler = ShardedBatchSampler(
            order, batch_size, drop_last=drop_last
        )
        loader_kwargs["batch_sampler"] = self.train_sampler
        return loader_kwargs

    def compute_forward(self, batch, stage):
        """Runs the model on a batch of segments.

        Arguments
        ---------
        batch : PaddedBatch
            Holds ``sig`` (``[batch, time]`` and relative lengths), ``mask``
            (``[batch, time]`` voiced 0/1), and for the feature cache
            ``wav``, ``seg_start``, ``seg_stop``.
        stage : sb.Stage
            One of sb.Stage.TRAIN, sb.Stage.VALID, or sb.Stage.TEST.

        Returns
        -------
        predictions : torch.Tensor
            ``[batch, 1, n_classes]`` log-probabilities.
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        mask, _ = batch.mask
        if stage == sb.Stage.TRAIN:
            self._freeze_am_resnet()
        ssl_feats = ssl_lens = am_feats = am_lens = None
        if self.feature_cache is not None:
            samples = torch.round(wav_lens * wavs.shape[1]).long().tolist()
            sigs = [wav[:n] for wav, n in zip(wavs, samples)]
            keys = (batch.wav, batch.seg_start.tolist(),
                    batch.seg_stop.tolist())
            ssl_feats, ssl_lens = self.feature_cache.features(sigs, *keys)
        if self.am_cache is not None:
            # Frozen AM-ResNet: both branches from the cache; AMSER.forward
            # then only runs the fusion.
            am_feats, am_lens = self.am_cache.features(
                sigs, *keys, masks=[m[:n] for m, n in zip(mask, samples)]
            )
        # Through self.modules (a DDP wrapper under torchrun: it
        # synchronises the gradients of what this forward uses).
        embeddings = self.modules.embedding_model(
            wavs, wav_lens, mask=mask, ssl_feats=ssl_feats,
            ssl_lens=ssl_lens, am_feats=am_feats, am_lens=am_lens,
        )
        outputs = self.modules.classifier(embeddings)
        if getattr(unwrap(self.modules.classifier), "output", None) == "prob":
            return torch.log(outputs.clamp(min=1e-12))
        # log_softmax is idempotent on log-probabilities, so a classifier
        # emitting logits or log-probabilities gives the same result.
        return torch.log_softmax(outputs, dim=-1)

    def compute_objectives(self, predictions, batch, stage):
        """Soft-target cross-entropy; collects posteriors at valid/test.

        Arguments
        ---------
        predictions : torch.Tensor
            ``[batch, 1, n_classes]`` log-probabilities from
            ``compute_forward``.
        batch : PaddedBatch
            Holds ``soft_target`` (``[batch, n_classes]``), ``emo_encoded``
            (``[batch]``) and ``utt_id``.
        stage : sb.Stage
            One of sb.Stage.TRAIN, sb.Stage.VALID, or sb.Stage.TEST.

        Returns
        -------
        loss : torch.Tensor
            A one-element tensor used for backpropagating the gradient.
        """
        targets, _ = batch.soft_target
        targets = targets.to(predictions.device)
        smoothing = self.hparams.label_smoothing
        loss = soft_target_cross_entropy(
            predictions,
            targets,
            class_weights=self.class_weights,
            label_smoothing=smoothing,
        )
        if stage == sb.Stage.TRAIN and self.distributed_launch:
            # DDP averages the processes' gradients: weigh this process's
            # mean loss by its share of the step's loss mass, so that the
            # result is the one-process gradient of the whole step (also
            # for an unevenly split last batch).
            loss = loss * share_weight(
                self._loss_mass(targets, smoothing), self.device
            )
        if stage != sb.Stage.TRAIN:
            self.stats.append(
                batch.utt_id, predictions.detach().exp(), batch.emo_encoded
            )
        return loss

    def _loss_mass(self, targets, smoothing):
        """The normaliser of ``soft_target_cross_entropy``'s mean: the sum
        of the (renormalised, smoothed, class-weighted) targets."""
        targets = targets.float()
        targets = targets / targets.sum(dim=-1, keepdim=True)
        if smoothing > 0:
            targets = (1 - smoothing) * targets + smoothing / targets.shape[-1]
        if self.class_weights is not None:
            targets = targets * self.class_weights.to(targets)
        return float(targets.sum())

    def _sum_over_processes(self, values):
        """``values`` (floats) summed over the processes (DDP), else as is."""
        if world_size() == 1 or not values:
            return [float(v) for v in values]
        tensor = torch.tensor(
            [float(v) for v in values], dtype=torch.float64,
            device=self.device,
        )
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor.tolist()

    def on_stage_start(self, stage, epoch=None):
        """Gets called at the beginning of each stage.

        Arguments
        ---------
        stage : sb.Stage
            One of sb.Stage.TRAIN, sb.Stage.VALID, or sb.Stage.TEST.
        epoch : int
            The currently-starting epoch. This is passed
            `None` during the test stage.
        """
        self._stage_start = time.time()
        for cache in (self.feature_cache, self.am_cache):
            if cache is not None:
                cache.reset_stats()
        if stage != sb.Stage.TRAIN:
            self.stats = ClassificationStats(self.labels)

    def _cache_stats(self):
        """Feature-cache counters of the stage, for the log."""
        stats = {}
        if self.feature_cache is not None:
            stats["cache_hits"] = self.feature_cache.hits
            stats["cache_misses"] = self.feature_cache.misses
        if self.am_cache is not None:
            stats["am_cache_misses"] = self.am_cache.misses
        return stats

    def _save_and_keep_best(self, meta):
        """``save_and_keep_only(max_keys=["UA"])``: keeps the best valid UA
        and the latest checkpoint.

        Under DDP the processes save together, but only the main process
        lists and deletes old checkpoints: SpeechBrain deletes in step on
        every process (a collective call per deletion), which deadlocks
        when the processes' listings differ.
        """
        if not self.distributed_launch:
            self.checkpointer.save_and_keep_only(meta=meta, max_keys=["UA"])
            return
        self.checkpointer.save_checkpoint(meta=meta)
        if sb.utils.distributed.if_main_process():
            with sb.utils.distributed.MainProcessContext():
                self.checkpointer.delete_checkpoints(
                    num_to_keep=1, max_keys=["UA"]
                )
        sb.utils.distributed.ddp_barrier()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Gets called at the end of each stage: logs, anneals the learning
        rate, checkpoints (keeping the best valid UA) and writes metrics.

        Arguments
        ---------
        stage : sb.Stage
            One of sb.Stage.TRAIN, sb.Stage.VALID, sb.Stage.TEST
        stage_loss : float
            The average loss for all of the data processed in this stage.
        epoch : int
            The currently-starting epoch. This is passed
            `None` during the test stage.
        """
        seconds = round(time.time() - self._stage_start, 2)
        if stage == sb.Stage.TRAIN:
            # Under DDP: the mean over the processes of their (weighted)
            # losses is the one-process epoch loss; cache counts add up.
            cache = self._cache_stats()
            totals = self._sum_over_processes([stage_loss, *cache.values()])
            loss = totals[0] / max(1, world_size())
            self.train_stats = {"loss": loss, "seconds": seconds}
            self.train_stats.update(
                {key: int(v) for key, v in zip(cache, totals[1:])}
            )
            return

        summary = self.stats.summarize()
        stats = {
            "loss": stage_loss,
            "WA": round(summary["WA"], 2),
            "UA": round(summary["UA"], 2),
            "macro_F1": round(summary["macro_F1"], 2),
        }
        stats.update(
            {f"recall_{k}": round(v, 2) for k, v in summary["recall"].items()}
        )
        stats["seconds"] = seconds
        stats.update(self._cache_stats())
        metrics_folder = os.path.join(self.hparams.output_folder, "metrics")
        os.makedirs(metrics_folder, exist_ok=True)

        if stage == sb.Stage.VALID:
            lr = anneal_epoch(self._hparam("lr_annealing"), self.optimizer,
                              epoch, stats["UA"])
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr},
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            if self.hparams.save_valid_confusion:
                write_once(self.stats.write)(
                    os.path.join(metrics_folder, f"valid_epoch{epoch}"),
                    title=f"valid, epoch {epoch}",
                )
            self._save_and_keep_best(
                {"UA": stats["UA"], "WA": stats["WA"], "epoch": epoch}
            )

        if stage == sb.Stage.TEST:
            counter = self._hparam("epoch_counter")
            loaded = counter.current if counter is not None else None
            self.hparams.train_logger.log_stats(
                {"epoch loaded": loaded}, test_stats=stats
            )
            # Every process evaluated the whole test set (SpeechBrain does
            # not shard valid/test): the main process writes, all get the
            # summary.
            self.test_summary = write_once(self.stats.write)(
                os.path.join(self.hparams.output_folder, "test"),
                title="test",
                extra={"epoch": loaded, "loss": stage_loss,
                       "model_selection": self._hparam("model_selection"),
                       "debug": bool(self.debug)},
            )
