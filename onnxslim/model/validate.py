"""Structural checks of a model: opsets, known ops, defined inputs, no cycle, external data."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from onnxslim.errors import OnnxSlimError
from onnxslim.model.graph import all_graphs, default_opset


def validate_model(model: ir.Model, where: str = "model") -> None:
    """Reject models onnxslim cannot handle, with one clear line."""
    if not model.graph.outputs:
        raise OnnxSlimError(f"{where}: not an ONNX model (the graph has no outputs)")
    if (model.ir_version or 0) > onnx.IR_VERSION:
        raise OnnxSlimError(
            f"{where}: IR version {model.ir_version} is newer than this onnx release reads "
            f"({onnx.IR_VERSION}): upgrade onnx (and onnxruntime) first"
        )
    opset = default_opset(model.opset_imports)
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and opset > newest:
        raise OnnxSlimError(
            f"{where}: opset {opset} is newer than this onnx release supports ({newest})"
        )
    _check_nodes(model, where)
    _check_acyclic(model, where)
    _check_external_data(model, where)


def scopes(model: ir.Model) -> Iterator[tuple[ir.Graph | ir.Function, dict[str, int]]]:
    """Every graph and function with the opsets its nodes see."""
    for graph in all_graphs(model):
        yield graph, model.opset_imports
    for function in model.functions.values():
        yield function, {**model.opset_imports, **function.opset_imports}
        for node in function:
            for attr in node.attributes.values():
                if not attr.is_ref() and attr.type == ir.AttributeType.GRAPH:
                    yield attr.as_graph(), {**model.opset_imports, **function.opset_imports}
                elif not attr.is_ref() and attr.type == ir.AttributeType.GRAPHS:
                    for graph in attr.as_graphs():
                        yield graph, {**model.opset_imports, **function.opset_imports}


def _check_nodes(model: ir.Model, where: str) -> None:
    """Default-domain ops must exist at the model's opset; every input must come from somewhere."""
    local = {(domain, name) for domain, name, _ in model.functions}
    for scope, opsets in scopes(model):
        formal = set(scope.inputs)
        for node in scope:
            label = _label(node)
            domain = "" if node.domain == "ai.onnx" else node.domain
            if domain == "" and (domain, node.op_type) not in local:
                version = default_opset(opsets)
                if version is None:
                    raise OnnxSlimError(
                        f"{where}: {label} is an ONNX operator, "
                        "but the model imports no default ONNX opset"
                    )
                reason = _unknown_op(node.op_type, version)
                if reason is not None:
                    raise OnnxSlimError(f"{where}: {label}: {node.op_type!r} {reason}")
            for value in node.inputs:
                if value is None or value in formal:
                    continue
                if (
                    value.producer() is None
                    and not value.is_graph_input()
                    and not value.is_initializer()
                ):
                    raise OnnxSlimError(
                        f"{where}: {label} reads {value.name!r}, "
                        "which no node, graph input or initializer defines"
                    )


def _unknown_op(op_type: str, version: int) -> str | None:
    """Why a default-domain op does not run at opset `version` (None: onnx or ONNX Runtime has
    it there)."""
    if onnx.defs.has(op_type, version) or _ort_runs(op_type, version):
        return None
    if onnx.defs.has(op_type):
        since = min(
            schema.since_version
            for schema in onnx.defs.get_all_schemas_with_history()
            if schema.name == op_type and schema.domain in ("", "ai.onnx")
        )
        return f"does not exist in opset {version} (it needs opset {since} or later)"
    return "is not an ONNX operator (custom ops need their own domain)"


def _ort_runs(op_type: str, version: int) -> bool:
    """Whether ONNX Runtime's CPU provider runs the ONNX-domain `op_type` at opset `version`: its
    schema there (the newest from `version` or before) is not deprecated, and a CPU kernel covers
    `version`. Its own LayerNormalization from opset 1 (onnx's is from 17), the
    SimplifiedLayerNormalization its transformer optimizer writes for Llama and T5, ImageScaler
    below opset 10 (old model zoo exports); not its TensorRT-only ops."""
    schemas, kernels = _ort_onnx_ops()
    since = [schema for schema in schemas.get(op_type, ()) if schema[0] <= version]
    return (
        bool(since)
        and not max(since)[1]
        and any(low <= version <= high for low, high in kernels.get(op_type, ()))
    )


@functools.cache
def _ort_onnx_ops() -> tuple[dict[str, list[tuple[int, bool]]], dict[str, list[tuple[int, int]]]]:
    """ONNX Runtime's ONNX-domain ops: their schemas as (since_version, deprecated), and the
    opset ranges of their CPU kernels, by op. Empty where the ORT build does not list them."""
    from onnxslim.passes import upstream  # (onnxscript's import deferred)

    try:
        schemas, kernels = upstream.ort_operator_schemas(), upstream.ort_kernels()
    except (ImportError, RuntimeError):
        return {}, {}
    since: dict[str, list[tuple[int, bool]]] = {}
    for schema in schemas:
        if schema.domain in ("", "ai.onnx"):
            since.setdefault(schema.name, []).append((schema.since_version, schema.deprecated))
    ranges: dict[str, list[tuple[int, int]]] = {}
    for kernel in kernels:
        if kernel.provider == "CPUExecutionProvider" and kernel.domain in ("", "ai.onnx"):
            ranges.setdefault(kernel.op_name, []).append(tuple(kernel.version_range))
    return since, ranges


def _check_acyclic(model: ir.Model, where: str) -> None:
    """Nodes may come in any order, but their dependencies must not form a cycle."""
    for scope, _ in scopes(model):
        nodes = list(scope)
        position = {node: index for index, node in enumerate(nodes)}
        waiting = [0] * len(nodes)
        users: list[list[int]] = [[] for _ in nodes]
        for index, node in enumerate(nodes):
            producers = {
                position[p] for p in _dependencies(node) if p in position and p is not node
            }
            waiting[index] = len(producers)
            for producer in producers:
                users[producer].append(index)
            if any(p is node for p in _dependencies(node)):
                waiting[index] = -1  # a node that reads its own output
        ready = [index for index, count in enumerate(waiting) if count == 0]
        done = 0
        while ready:
            index = ready.pop()
            done += 1
            for user in users[index]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    ready.append(user)
        if done != len(nodes):
            stuck = next(nodes[i] for i, count in enumerate(waiting) if count != 0)
            raise OnnxSlimError(f"{where}: the graph has a cycle (through {_label(stuck)})")


def _label(node: ir.Node) -> str:
    return (
        f"node {node.name!r} ({node.op_type})" if node.name else f"an unnamed {node.op_type} node"
    )


def _dependencies(node: ir.Node) -> Iterator[ir.Node]:
    """Producers of the node's inputs, and of the outer-scope values its subgraphs read."""
    for value in node.inputs:
        if value is not None and value.producer() is not None:
            yield value.producer()
    for attr in node.attributes.values():
        if attr.is_ref() or attr.type not in (
            ir.AttributeType.GRAPH,
            ir.AttributeType.GRAPHS,
        ):
            continue
        graphs = [attr.as_graph()] if attr.type == ir.AttributeType.GRAPH else attr.as_graphs()
        for graph in graphs:
            for inner in ir.traversal.RecursiveGraphIterator(graph):
                for value in inner.inputs:
                    if value is not None and value.producer() is not None:
                        yield value.producer()


def _check_external_data(model: ir.Model, where: str) -> None:
    """Every external tensor must exist inside the model's folder and be long enough."""
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            tensor = value.const_value
            if not isinstance(tensor, ir.ExternalTensor):
                continue
            base = Path(tensor.base_dir or ".").resolve()
            file = (base / tensor.location).resolve()
            if base != file and base not in file.parents:
                raise OnnxSlimError(
                    f"{where}: external data location {tensor.location!r} of {value.name!r} "
                    "escapes the model's folder; refusing to read it"
                )
            if not file.is_file():
                raise OnnxSlimError(
                    f"{where}: external data file {tensor.location!r} of {value.name!r} is missing"
                )
            needed = (tensor.offset or 0) + (tensor.length or tensor.nbytes)
            if file.stat().st_size < needed:
                raise OnnxSlimError(
                    f"{where}: external data file {tensor.location!r} "
                    f"is too short for {value.name!r} ({file.stat().st_size} bytes, needs {needed})"
                )
