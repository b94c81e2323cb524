"""Shrink a quantized model's file: on small models the Q/DQ bookkeeping (long generated names,
value_info) weighs as much as the int8 weights. Exporters' debug info (doc strings, torch's per-node
stack traces) is the lossless pass `strip-debug-info`'s, which `--skip` can keep."""

from __future__ import annotations

from collections.abc import Collection

import onnx_ir as ir

# Conv attributes equal to the defaults the spec states in prose (onnx's schemas do not carry them).
_CONV_DEFAULTS = {"dilations": 1, "strides": 1, "pads": 0, "group": 1, "auto_pad": "NOTSET"}
DEFAULT_ATTRIBUTES = {"Conv": _CONV_DEFAULTS, "ConvTranspose": _CONV_DEFAULTS}


class CompactPass(ir.passes.InPlacePass):
    """In the main graph: short names for the initializers and for the values and nodes not in
    ``keep`` (those quantization created), no shape/type annotations besides the graph inputs' and
    outputs', and no Conv attributes spelling out their default."""

    def __init__(self, keep: Collection[str]):
        super().__init__()
        self.keep = set(keep)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        io_values = {*graph.inputs, *graph.outputs}
        names = _ShortNames({v.name for v in io_values} | self.keep | set(graph.initializers))
        for value in list(graph.initializers.values()):
            if value not in io_values:
                value.shape, value.type = None, None  # the tensor has them
                value.name = names.next()  # onnx-ir re-keys the initializer
        for node in graph:
            if node.name not in self.keep:
                node.name = None
            _drop_default_attributes(node)
            for value in node.outputs:
                if value not in io_values:
                    value.shape, value.type = None, None
                    if value.name not in self.keep:
                        value.name = names.next()
        return ir.passes.PassResult(model, modified=True)


def _drop_default_attributes(node: ir.Node) -> None:
    defaults = DEFAULT_ATTRIBUTES.get(node.op_type, {}) if node.domain == "" else {}
    for name, default in defaults.items():
        attr = node.attributes.get(name)
        if attr is None:
            continue
        value = attr.value
        if (
            value == default
            or isinstance(value, (list, tuple))
            and all(v == default for v in value)
        ):
            del node.attributes[name]


class _ShortNames:
    """Names ``_0``, ``_1``, ... (base 36) that avoid ``taken``."""

    DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

    def __init__(self, taken: set[str]):
        self.taken, self.count = taken, 0

    def next(self) -> str:
        while True:
            n, digits = self.count, ""
            while True:
                n, r = divmod(n, len(self.DIGITS))
                digits = self.DIGITS[r] + digits
                if n == 0:
                    break
            self.count += 1
            name = f"_{digits}"
            if name not in self.taken:
                return name
