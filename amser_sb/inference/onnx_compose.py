"""Building the ONNX file: export and the ``If`` on length.

:func:`build_onnx` exports :class:`~amser_sb.inference.onnx_graph.PosteriorGraph`:
in one piece for a model without a segment grid; with a grid, its voiced
mask (MADD) and its body (the model on every segment, the mean embedding,
the classifier) once each and its two segment fronts (the grid; each clip
whole) between them, joined by an ONNX ``If`` on the input's length
(:func:`compose_by_length`). Weight transposes are folded
(:func:`fold_weight_transposes`), so that onnxruntime's dynamic
quantisation (``onnx_int8``) finds the MatMul weights.

Authors
 * amser-sb contributors
"""

import contextlib
import logging
import warnings

import numpy as np
import torch


from amser_sb.inference.onnx_contract import (
    OPSET,
    INPUT_NAMES,
    OUTPUT_NAME,
    OnnxExportError,
    check_clips,
    pad_batch,
)
from amser_sb.inference.onnx_graph import PosteriorGraph, traceable

logger = logging.getLogger(__name__)


# -------------------------------------------------------------- export ---
@contextlib.contextmanager
def quiet_logger(logger):
    """Only errors from ``logger`` while the block runs."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


#: What a front hands the body (``GraphFront``'s outputs, ``GraphBody``'s
#: inputs): segments, their relative lengths and voiced masks, and the
#: weights that average each utterance's segments.
FRONT_NAMES = ("segments", "segment_lens", "segment_mask", "weights")

#: What the voiced mask hands the segment fronts (``VoicedFront``'s
#: outputs, ``SegmentFront``'s inputs): waveforms zeroed past their
#: lengths, their valid samples, their voiced masks.
VOICED_NAMES = ("valid_wavs", "n_samples", "voiced_mask")


def export_graph(graph, inputs, input_names, output_names):
    """``torch.export`` + ONNX translation of ``graph`` on example inputs,
    every axis of every input dynamic.

    Arguments
    ---------
    graph : torch.nn.Module
        Called with the positional ``inputs``.
    inputs : tuple of torch.Tensor
        Example inputs (no axis of size 1, no two unrelated axes equal).
    input_names, output_names : sequence of str
        Names of the graph's inputs and outputs.

    Returns
    -------
    onnx.ModelProto
    """
    dims = torch.export.Dim.AUTO
    shapes = tuple({axis: dims for axis in range(x.dim())} for x in inputs)
    with traceable(graph), torch.no_grad():
        program = torch.export.export(
            graph, tuple(inputs), dynamic_shapes=shapes, strict=False
        )
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            fixed = [d for d in node.meta["val"].shape if isinstance(d, int)]
            if fixed:
                raise OnnxExportError(
                    f"the exported graph fixed an axis of {node.name} to "
                    f"{fixed} (a traced Python int): report it as a bug"
                )
    # onnx_ir's passes log each clean-up at INFO, the exporter's registry
    # each torchvision operator it skips, and torch's pytree warns of its
    # own deprecations: none of it is the user's concern
    registry = "torch.onnx._internal.exporter._registration"
    with quiet_logger(logging.getLogger("onnx_ir")), \
            quiet_logger(logging.getLogger(registry)), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec",
                                category=FutureWarning)
        onnx_program = torch.onnx.export(
            program, dynamo=True, opset_version=OPSET, optimize=False,
            input_names=list(input_names), output_names=list(output_names),
            verbose=False,
        )
    model = onnx_program.model_proto
    keep_input_names(model, input_names)
    cast_like_as_cast(model)
    fold_weight_transposes(model)
    return model


def cast_like_as_cast(model):
    """Each ``CastLike`` whose target type is known becomes a ``Cast`` to
    that type. In place.

    The exporter writes ``CastLike`` for the constants of many operators
    (Whisper's STFT window padding among them); onnxruntime has no kernel
    to fold it at load time and warns about every such node when a session
    is opened with default logging (the torch-free example's). A ``Cast``
    computes the same and folds.

    Arguments
    ---------
    model : onnx.ModelProto

    Returns
    -------
    int
        How many nodes were replaced.
    """
    from onnx import helper

    graph = model.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    replaced = 0
    for i, node in enumerate(graph.node):
        if node.op_type != "CastLike" or node.domain not in ("", "ai.onnx"):
            continue
        target = types.get(node.input[1])
        if not target:
            continue
        graph.node[i].CopyFrom(helper.make_node(
            "Cast", [node.input[0]], list(node.output), to=target,
            name=node.name,
        ))
        replaced += 1
    return replaced


def keep_input_names(model, input_names):
    """Give each input its own name back where the exporter renamed it
    after the output it passes through unchanged (an ``Identity`` makes
    the output), so that the graph reads ``input_names`` and writes its
    own outputs. In place.

    Arguments
    ---------
    model : onnx.ModelProto
    input_names : sequence of str
    """
    from onnx import helper

    passed = []
    for value, name in zip(model.graph.input, input_names):
        if value.name != name:
            passed.append(helper.make_node("Identity", [name], [value.name],
                                            name=f"pass_{name}"))
            value.name = name
    if passed:
        nodes = [*passed, *model.graph.node]
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def fold_weight_transposes(model):
    """Store transposed weights instead of transposing them in the graph.

    The exporter writes ``Linear`` as ``MatMul(x, Transpose(weight))``;
    onnxruntime's quantiser only quantises a ``MatMul`` whose weight is an
    initializer, so each ``Transpose`` of an initializer becomes an
    initializer (named after the weight, hence the same in both branches of
    ``compose_by_length``). In place.

    Arguments
    ---------
    model : onnx.ModelProto
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    users = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    renamed, dropped, kept_nodes = {}, set(), []
    for node in graph.node:
        if node.op_type != "Transpose" or node.input[0] not in inits:
            kept_nodes.append(node)
            continue
        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
        source = numpy_helper.to_array(inits[node.input[0]])
        array = np.transpose(source, perm[0] if perm else None)
        tag = "_".join(str(p) for p in (perm[0] if perm else []))
        name = f"{node.input[0]}.transposed{tag}"
        if name not in inits:
            folded = numpy_helper.from_array(np.ascontiguousarray(array), name)
            graph.initializer.append(folded)
            inits[name] = folded
        renamed[node.output[0]] = name
        users[node.input[0]] -= 1
        if users[node.input[0]] == 0:
            dropped.add(node.input[0])
    if not renamed:
        return
    del graph.node[:]
    graph.node.extend(kept_nodes)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    for i, output in enumerate(graph.output):
        if output.name in renamed:
            raise OnnxExportError("a graph output is a folded weight")
    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def same_tensor(a, b):
    from onnx import numpy_helper

    if (a.data_type, list(a.dims)) != (b.data_type, list(b.dims)):
        return False
    if a.raw_data and b.raw_data:
        return a.raw_data == b.raw_data
    return np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def as_branch(model, prefix, initializers, functions):
    """``model``'s graph as an ``If`` branch reading the outer inputs.

    Every value it makes is renamed ``prefix + name``; its initializers
    move to ``initializers`` (shared when equal to one already there, e.g.
    the weights both branches use), its functions to ``functions``.
    """
    import onnx

    graph = model.graph
    rename = {}
    for init in graph.initializer:
        name = init.name
        if name in initializers and not same_tensor(initializers[name], init):
            name = prefix + name
        rename[init.name] = name
        if name not in initializers:
            kept = onnx.TensorProto()
            kept.CopyFrom(init)
            kept.name = name
            initializers[name] = kept
    for func in model.functions:
        functions.setdefault((func.domain, func.name, func.overload), func)
    inputs = {value.name for value in graph.input}
    for node in graph.node:
        for attr in node.attribute:
            if attr.g.node or attr.graphs:
                raise OnnxExportError(
                    "the exported graph holds a subgraph: report it as a bug"
                )
        node.name = prefix + node.name
        for i, name in enumerate(node.output):
            if name:
                rename[name] = prefix + name
                node.output[i] = prefix + name
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name and name not in inputs:
                node.input[i] = rename.get(name, name)
    for value in list(graph.value_info) + list(graph.output):
        value.name = rename.get(value.name, value.name)
    del graph.initializer[:]
    del graph.input[:]
    graph.name = prefix.strip("/")
    return graph


def compose_by_length(voiced, whole, segmented, body, segment):
    """One model: the voiced mask, a segment front chosen by the input's
    length, then the body.

    ``torch.export`` cannot keep one time axis dynamic across "shorter
    than a segment" (the clip is its own segment, of any length) and
    "longer" (fixed-length segments), so each segment front is exported on
    its own and an ONNX ``If`` on the input's length picks one. The voiced
    mask (MADD, on the whole utterance either way) before it and the body
    (which holds every weight of the model) after it are exported once; the
    ``If``'s branches read the voiced mask's outputs (``VOICED_NAMES``),
    the body reads the ``If``'s (``FRONT_NAMES``).

    Arguments
    ---------
    voiced : onnx.ModelProto
        Waveforms to ``VOICED_NAMES``.
    whole, segmented : onnx.ModelProto
        ``VOICED_NAMES`` to ``FRONT_NAMES``, for inputs of at most / more
        than ``segment`` samples.
    body : onnx.ModelProto
        ``FRONT_NAMES`` to posteriors.
    segment : int
        Segment length in samples.

    Returns
    -------
    onnx.ModelProto
    """
    import onnx
    from onnx import TensorProto, helper

    inputs = [onnx.ValueInfoProto() for _ in voiced.graph.input]
    for copy, value in zip(inputs, voiced.graph.input):
        copy.CopyFrom(value)
    output = onnx.ValueInfoProto()
    output.CopyFrom(body.graph.output[0])
    initializers, functions = {}, {}
    voiced_graph = as_branch(voiced, "voiced/", initializers, functions)
    else_branch = as_branch(whole, "whole/", initializers, functions)
    then_branch = as_branch(segmented, "segmented/", initializers, functions)
    body_graph = as_branch(body, "body/", initializers, functions)
    nodes = [
        *voiced_graph.node,
        *(helper.make_node("Identity", [value.name], [name],
                           name=f"voiced_{name}")
          for value, name in zip(voiced_graph.output, VOICED_NAMES)),
        helper.make_node("Shape", ["wavs"], ["time"], start=1, end=2),
        helper.make_node(
            "Constant", [], ["segment"],
            value=helper.make_tensor("segment", TensorProto.INT64, [1],
                                     [segment]),
        ),
        helper.make_node("Greater", ["time", "segment"], ["segmented"]),
        helper.make_node(
            "If", ["segmented"], list(FRONT_NAMES),
            then_branch=then_branch, else_branch=else_branch,
        ),
        *body_graph.node,
        helper.make_node("Identity", [body_graph.output[0].name],
                         [output.name]),
    ]
    graph = helper.make_graph(
        nodes, "amser_sb_posteriors", inputs, [output],
        initializer=list(initializers.values()),
        value_info=[*voiced_graph.value_info, *body_graph.value_info],
    )
    opsets = {}
    for part in (voiced, whole, segmented, body):
        for opset in part.opset_import:
            opsets.setdefault(opset.domain, opset)
    model = helper.make_model(
        graph, opset_imports=list(opsets.values()),
        functions=list(functions.values()),
    )
    model.ir_version = voiced.ir_version
    return model


def build_onnx(clf, sample_rate):
    """The ONNX model of a loaded model folder (not yet checked).

    Arguments
    ---------
    clf : speechbrain.inference.classifiers.EncoderClassifier
        The folder loaded by ``amser_sb.inference.classify.load_classifier``.
    sample_rate : int
        The model's rate.

    Returns
    -------
    onnx.ModelProto
    """
    graph = PosteriorGraph(clf.mods.embedding_model, clf.mods.classifier)
    graph.eval()
    segment = graph.segment
    short = segment or int(4 * sample_rate)
    clips = check_clips(
        [0.6 * short / sample_rate, 0.45 * short / sample_rate], sample_rate
    )
    short_wavs, short_lens = pad_batch(clips)
    if segment is None:
        return export_graph(graph, (short_wavs, short_lens), INPUT_NAMES,
                            [OUTPUT_NAME])
    clips = check_clips(
        [2.3 * segment / sample_rate, 1.6 * segment / sample_rate],
        sample_rate,
    )
    wavs, lens = pad_batch(clips)
    front = graph.front
    voiced = export_graph(front.voiced, (wavs, lens), INPUT_NAMES,
                          VOICED_NAMES)
    with torch.no_grad():
        short_voiced = front.voiced(short_wavs, short_lens)
        long_voiced = front.voiced(wavs, lens)
        example = front.grid(*long_voiced)
    whole = export_graph(graph.whole_front().eval(), short_voiced,
                         VOICED_NAMES, FRONT_NAMES)
    segmented = export_graph(front.grid, long_voiced, VOICED_NAMES,
                             FRONT_NAMES)
    body = export_graph(graph.body, example, FRONT_NAMES, [OUTPUT_NAME])
    return compose_by_length(voiced, whole, segmented, body, segment)
