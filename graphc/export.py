"""Ahead-of-time export of a `gc.function` and loading an export back (see docs/export.md).

``fn.export(directory, name)`` writes to `directory`:

* ``lib<name>.so``: the function's programs compiled for a portable CPU (``x86-64-v3`` by
  default), one per shape signature, behind one C function ``<name>``;
* ``<name>.h``: its C declaration with the calling convention, error codes, workspace
  size and BLAS slots documented;
* ``<name>.json``: the manifest (`graphc.manifest`): inputs, state (the function's
  variables), outputs, dtypes, shapes (None for symbolic dims), the compiled signatures,
  graphc version, target CPU, digests of the library and state file, and a hash of all
  of it that the library also returns (``<name>_abi()``);
* ``<name>.state.bin``: the variables' values at export time, raw, at the manifest's offsets.

`load_exported` needs only numpy and ctypes (no llvmlite, no C compiler).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import manifest as mf
from .dtypes import as_shape
from .errors import FeedError, GraphcError, NumericsError, out_of_memory
from .runtime.executable import Executable, VariableStore
from .runtime.feeds import convert_feed
from .version import __version__

__all__ = ["ExportedFunction", "load_exported"]



def export_function(fn: Any, directory: str | Path, name: str,
                    signatures: Sequence[Sequence[Sequence[int]]] | None = None, cpu: str = "x86-64-v3",
                    output_names: Sequence[str] | None = None) -> Path:
    """Export `fn` (a `graphc.Function`); returns the library's path. See `Function.export`."""
    from .backend.llvm import aot, capi

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise GraphcError(f"export name {name!r} must be a C identifier (letters, digits, underscores)")
    if output_names is not None and len(output_names) != len(fn.outputs):
        raise GraphcError(f"output_names has {len(output_names)} names for {len(fn.outputs)} outputs")
    symbolic = fn.symbolic_program() if signatures is None else None
    if symbolic is not None:
        signatures, programs = [None], [symbolic]
    else:
        signatures = _signatures(fn, signatures)
        programs = [fn.program(sig, specialize=True) for sig in signatures]
    _refuse_lapack(programs)
    if any(p.uses_mpi for p in programs):
        raise GraphcError("export: the function runs gc.distributed collectives, which need MPI; an exported "
                          "library has no MPI world (export the per-rank computation without them)")
    cpu_name, features = aot.resolve_cpu(cpu)
    assigned = {a.inputs[0] for a in fn.assigns}
    variables = [v for v in fn.variables if any(v in dict(p.var_slots) for p in programs)]
    taken: set[str] = set()
    args = [capi.Arg(ph.name, capi.c_identifier(ph.name, taken), "input", np.dtype(ph.dtype).name, ph.shape, False)
            for ph in fn.inputs]
    args += [capi.Arg(v.name, capi.c_identifier(v.name, taken), "state", np.dtype(v.dtype).name, v.shape,
                      v in assigned) for v in variables]
    names = list(output_names) if output_names is not None else [t.name for t in fn.outputs]
    args += [capi.Arg(n, capi.c_identifier(n, taken), "output", np.dtype(t.dtype).name, t.shape, True)
             for n, t in zip(names, fn.outputs)]
    variants = [_variant(fn, sig, p, variables, f"{name}_program_{i}")
                for i, (sig, p) in enumerate(zip(signatures, programs))]
    texts = [p.ir_text if not v.dims_global else aot.thread_local_dims(p.ir_text, v.dims_global)
             for p, v in zip(programs, variants)]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_file = f"{name}.state.bin"
    layout, blob = _state(fn, variables)
    manifest = _manifest(name, args, variants, layout, blob, cpu_name, features, fn)
    info = {"version": __version__, "cpu": cpu_name, "state_file": state_file}
    state_args = [(a, off, nbytes) for a, (off, nbytes) in zip([a for a in args if a.role == "state"], layout)]
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=directory) as tmp:  # then renamed in place
        build = Path(tmp)
        (build / f"{name}.h").write_text(capi.header(name, args, variants, info, state_args))
        (build / f"{name}.c").write_text(capi.source(name, args, variants, manifest["abi_hash"]))
        objects = []
        for i, (text, v) in enumerate(zip(texts, variants)):
            objects.append(build / f"program_{i}.o")
            objects[-1].write_bytes(aot.emit_object(text, v.entry, cpu_name, features))
        library = build / f"lib{name}.so"
        exported = [name, f"{name}_workspace_size", f"{name}_strerror", f"{name}_abi", f"{name}_set_sgemm",
                    f"{name}_set_dgemm"]
        aot.link_library(library, build / f"{name}.c", objects, "host" if cpu == "host" else cpu_name, exported)
        (build / state_file).write_bytes(blob)
        manifest["library"] = mf.digest(library.read_bytes())
        (build / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for file in (f"lib{name}.so", f"{name}.h", state_file, f"{name}.json"):
            os.replace(build / file, directory / file)
    return directory / f"lib{name}.so"


def _refuse_lapack(programs: list) -> None:
    """Exported libraries carry no LAPACK (docs/export.md): refuse gc.linalg factorizations and solves."""
    from .backend.llvm.steps import Lapack

    for p in programs:
        for step in p.plan.all_steps():
            if isinstance(step, Lapack):
                raise GraphcError(f"export: {step.node.op} (gc.linalg) calls LAPACK, which exported libraries do "
                                  f"not provide; export a function without it\n  at {step.node.loc}")


def _signatures(fn: Any, signatures: Sequence[Sequence[Sequence[int]]] | None) -> list[tuple]:
    if signatures is None:
        found = fn.signatures()
        if found:
            return sorted(found)
        if any(d is None for ph in fn.inputs for d in ph.shape):
            raise GraphcError("inputs have unknown dims: give signatures=[[shape per input], ...] or call the "
                              "function first (its called signatures are exported)")
        return [tuple(tuple(ph.shape) for ph in fn.inputs)]
    out = []
    for sig in signatures:
        if len(sig) != len(fn.inputs):
            raise GraphcError(f"a signature has one shape per input ({len(fn.inputs)}), got {len(sig)}")
        out.append(tuple(as_shape(s, 'a signature shape') for s in sig))
    if not out:
        raise GraphcError("signatures is empty")
    return list(dict.fromkeys(out))


def _variant(fn: Any, shapes: tuple | None, program: Any, variables: list, entry: str) -> Any:
    """How the C wrapper fills one program's table from the export's arguments (`shapes` None:
    the symbolic program, whose dims are affine functions of its symbols)."""
    from .backend.llvm import capi
    from .backend.llvm.capi import Variant, fixed_dims
    from .backend.llvm.codegen import table_bases

    bases = table_bases(program.plan)
    feeds, states = dict(program.feed_slots), dict(program.var_slots)
    slots = [feeds.get(ph, -1) for ph in fn.inputs] + [states.get(v, -1) for v in variables]
    symbols, out_shapes = (), [shape for shape, _, _ in program.out_slots]
    if shapes is None:
        shapes, symbols, out_shapes = _symbolic_dims(fn, program)
    all_shapes = [fixed_dims(s) if s and isinstance(s[0], int) or not s else s for s in shapes]
    all_shapes += [fixed_dims(v.shape) for v in variables]
    copy_from = [-1] * len(slots)
    first: dict[int, int] = {}
    fetches = list(dict.fromkeys(fn.outputs))
    for t in fn.outputs:
        index = program.fetch_index[fetches.index(t)]
        _, _, slot = program.out_slots[index]
        all_shapes.append(_dims(out_shapes[index], len(symbols)))
        if index in first:
            slots.append(-1)
            copy_from.append(first[index])
        else:
            first[index] = len(slots)
            slots.append(slot)
            copy_from.append(-1)
    hosts = tuple((capi.HOST_KINDS[n.op], n.attrs.get("summarize", 0), n.attrs["message"],
                   f"{n.inputs[0].name} (op {n.inputs[0].op}) at {n.loc}") for n in program.hosts)
    arena = (_dims([program.arena_formula.size], len(symbols))[0] if symbols
             else (program.plan.arena_bytes, ()))
    return Variant(entry, tuple(all_shapes), tuple(slots), tuple(copy_from), tuple(program.plan.consts),
                   bases["const"], bases["arena"], arena, bases["size"], bases["host"], hosts, symbols,
                   f"{entry}_dims" if symbols else "")


def _dims(shape: Sequence[Any], k: int) -> tuple:
    """Dims (int or a template's Affine) as capi's (const, coefficients per symbol)."""
    return tuple((d, ()) if isinstance(d, int) else (int(d.const), tuple(int(c) for c in d.coefs)) for d in shape)


def _symbolic_dims(fn: Any, program: Any) -> tuple[list, tuple[int, ...], list]:
    """(input shapes as capi dims, the flat argument dim each symbol is read from, output shapes)."""
    k = len(program.where)
    pattern = dict(zip(program.placeholders, program.pattern))
    at: dict[int, int] = {}
    shapes, flat = [], 0
    for ph in fn.inputs:
        dims = []
        for d in pattern[ph]:
            if d < 0:
                at.setdefault(-d - 1, flat)
                dims.append((0, tuple(int(i == -d - 1) for i in range(k))))
            else:
                dims.append((d, ()))
            flat += 1
        shapes.append(tuple(dims))
    return shapes, tuple(at[j] for j in range(k)), [shape for shape in program.out_shapes]


def _state(fn: Any, variables: list) -> tuple[list[tuple[int, int]], bytes]:
    """(offset, bytes) of each variable in the state file, and the file's contents."""
    layout, chunks, at = [], [], 0
    for var in variables:
        data = np.ascontiguousarray(fn.session.variable_value(var)).tobytes()
        pad = -at % mf.STATE_ALIGN
        chunks.append(b"\0" * pad + data)
        at += pad
        layout.append((at, len(data)))
        at += len(data)
    return layout, b"".join(chunks)


def _arg_entry(a: Any) -> dict[str, Any]:
    return {"name": a.name, "c_name": a.c_name, "dtype": a.dtype, "shape": list(a.shape)}


def _manifest(name: str, args: list, variants: list, layout: list, state: bytes, cpu: str, features: str,
              fn: Any) -> dict[str, Any]:
    """The manifest, hashed; the library's digest is added once it is linked."""
    from .backend.llvm.capi import workspace_size
    from .passes.memory import ALIGNMENT

    roles = {"inputs": [], "state": [], "outputs": []}
    for a in args:
        entry = _arg_entry(a)
        if a.role == "state":
            entry["updated"] = a.written
        roles["inputs" if a.role == "input" else "state" if a.role == "state" else "outputs"].append(entry)
    counts = [len(roles[r]) for r in mf.ROLES]
    signatures = []
    for v in variants:
        shapes = [[mf.dim_text(c, k) for c, k in s] for s in v.shapes]
        signatures.append({"inputs": shapes[:counts[0]], "state": shapes[counts[0]:counts[0] + counts[1]],
                           "outputs": shapes[counts[0] + counts[1]:]})
        if v.symbols:  # bytes of workspace a call needs, as a function of the symbols
            signatures[-1]["workspace"] = mf.dim_text(v.arena_bytes[0] + ALIGNMENT - 1, v.arena_bytes[1])
    for entry, (offset, nbytes) in zip(roles["state"], layout):
        entry["offset"], entry["nbytes"] = offset, nbytes
    manifest = {"format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "name": name,
                "graphc_version": __version__, "target": {"cpu": cpu, "features": features},
                "files": {"library": f"lib{name}.so", "header": f"{name}.h", "state": f"{name}.state.bin"},
                "single_output": fn.single_output, "function": name, **roles, "signatures": signatures,
                "workspace_bytes": workspace_size(variants), "state_file": mf.digest(state)}
    manifest["abi_hash"] = mf.abi_hash(manifest)
    return manifest


# --- loading -------------------------------------------------------------------------------
class _Spec:
    """What the feed checks of `Session.run` need to know about an input."""

    __slots__ = ("dtype", "name", "shape")

    def __init__(self, entry: dict[str, Any]):
        self.name, self.dtype = entry["name"], np.dtype(entry["dtype"])
        self.shape = tuple(entry["shape"])


def load_exported(directory: str | Path, name: str, blas: str | None = "auto") -> ExportedFunction:
    """The function exported as `name` into `directory`, callable like `gc.function`'s.

    Needs numpy and ctypes only. `blas`: "auto" gives the library scipy's sgemm/dgemm when
    scipy is importable (else its built-in GEMM runs); None selects the built-in GEMM. The
    BLAS slots belong to the library, which a process loads once per path: every load of
    it shares them, and the last load's choice holds.
    """
    return ExportedFunction(Path(directory), name, blas)


class ExportedFunction:
    """An exported library loaded with ctypes. Calls take the inputs positionally.

    `state` maps each state array's name to its array (loaded from the state file; updated
    in place by calls that update it). An entry may be replaced by an array of the same
    shape: one of another dtype (same-kind cast) or layout (strided, Fortran order,
    read-only, unaligned) is converted on the next call, and the converted copy replaces it.
    ``trust_input = True`` skips the Python-side conversions of inputs: arrays must then be
    C-contiguous of the exact dtypes (the library still checks dims and pointers).
    """

    trust_input: bool = False

    def __init__(self, directory: Path, name: str, blas: str | None = "auto"):
        manifest = mf.read(directory, name)
        self.name, self.manifest = name, manifest
        library = directory / manifest["files"]["library"]
        mf.check_file(library, manifest["library"], "library")  # a truncated library would SIGBUS in dlopen
        self.library = ctypes.CDLL(str(library))
        lib_abi = _symbol(self.library, f"{name}_abi", ctypes.c_char_p, []).__call__()
        if lib_abi is None or lib_abi.decode() != manifest["abi_hash"]:
            raise GraphcError(f"{directory / manifest['files']['library']} was not built with the manifest "
                              f"{name}.json (ABI hash {lib_abi!r} != {manifest['abi_hash']!r}); re-export both")
        self._strerror = _symbol(self.library, f"{name}_strerror", ctypes.c_char_p, [ctypes.c_int])
        self.inputs = [_Spec(e) for e in manifest["inputs"]]
        self.state_specs = [_Spec(e) for e in manifest["state"]]
        self.outputs = [_Spec(e) for e in manifest["outputs"]]
        argtypes: list[Any] = []
        for spec in self.inputs + self.state_specs + self.outputs:
            argtypes += [ctypes.c_void_p] + [ctypes.c_int64] * len(spec.shape)
        entry = _symbol(self.library, name, ctypes.c_int, argtypes + [ctypes.c_void_p, ctypes.c_size_t])
        self.state = _load_state(directory / manifest["files"]["state"], manifest)
        self._by_inputs = {tuple(tuple(s) for s in sig["inputs"]): sig for sig in manifest["signatures"]
                           if "workspace" not in sig}
        self._symbolic = [sig for sig in manifest["signatures"] if "workspace" in sig]
        self._single = manifest["single_output"]
        self._executable = Executable(_Library(self, entry), VariableStore(self.state))
        if blas not in ("auto", None):
            raise GraphcError(f"blas must be 'auto' or None, not {blas!r}")
        self.set_blas(*(_scipy_gemm() if blas == "auto" else (None, None)))

    def set_blas(self, sgemm: int | None, dgemm: int | None) -> None:
        """Point the library's BLAS slots at Fortran-convention sgemm/dgemm (None: built-in)."""
        for letter, address in (("s", sgemm), ("d", dgemm)):
            _symbol(self.library, f"{self.name}_set_{letter}gemm", None, [ctypes.c_void_p])(address)

    def strerror(self, code: int) -> str:
        return self._strerror(code).decode()

    def __call__(self, *args: Any) -> Any:
        if self.trust_input:
            if len(args) != len(self.inputs):
                raise TypeError(f"{self.name} takes {len(self.inputs)} input array(s), got {len(args)}")
            arrays = args
        else:
            arrays = check_arguments(self.name, self.inputs, args)
        self.signature(tuple(a.shape for a in arrays))  # raises for shapes no signature takes
        try:
            outs = self._executable.run(arrays)
        except MemoryError as exc:  # the outputs or the workspace
            raise out_of_memory(self.name, exc) from None
        return outs[0] if self._single else outs

    def signature(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[list[tuple[int, ...]], int | None]:
        """(output shapes, workspace bytes or None for a fixed signature's) for these input shapes:
        a fixed signature's, else the symbolic one's at the symbol values the shapes give."""
        sig = self._by_inputs.get(shapes)
        if sig is not None:
            return [tuple(s) for s in sig["outputs"]], None
        for sig in self._symbolic:
            symbols = mf.bind_symbols(shapes, sig["inputs"])
            if symbols is not None:
                return ([tuple(mf.eval_dim(d, symbols) for d in s) for s in sig["outputs"]],
                        mf.eval_dim(sig["workspace"], symbols))
        raise no_match(self.name, list(shapes), [sig["inputs"] for sig in self.manifest["signatures"]])


class _Library:
    """The exported C entry point as a program of the executable layer: `run` converts the
    state arrays where needed and makes one ctypes call with the executable's workspace."""

    def __init__(self, fn: ExportedFunction, entry: Any):
        self.fn, self.entry_point = fn, entry
        self.variables = [spec.name for spec in fn.state_specs]  # keys of the store's values (fn.state)
        self.updated = [e["updated"] for e in fn.manifest["state"]]
        self.writes = any(self.updated)
        self.workspace_bytes = fn.manifest["workspace_bytes"]

    def run(self, inputs: Sequence[np.ndarray], state: dict[str, np.ndarray], workspace: np.ndarray) -> list:
        fn = self.fn
        shapes, need = fn.signature(tuple(a.shape for a in inputs))
        if need is not None and need > workspace.size:  # a symbolic signature's: the library allocates it
            workspace = workspace[:0]
        outs = [np.empty(shape, spec.dtype) for spec, shape in zip(fn.outputs, shapes)]
        cargs: list[Any] = []
        for a in list(inputs) + self._state_arrays(state) + outs:
            cargs.append(a.__array_interface__["data"][0])
            cargs += a.shape
        cargs += [workspace.__array_interface__["data"][0] if workspace.size else None, workspace.size]
        rc = self.entry_point(*cargs)
        if rc:
            from .backend.llvm.capi import ERRORS  # no llvmlite behind it

            error = NumericsError if ERRORS.get(rc, ("",))[0] == "ERR_NUMERICS" else GraphcError
            raise error(f"{fn.name} returned {rc}: {fn.strerror(rc)}")
        return outs

    def _state_arrays(self, state: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The state arrays as the library needs them; an entry the user replaced with another
        dtype or layout is converted (a copy, which then replaces it in `state`)."""
        arrays, name = [], self.fn.name
        for spec, updated in zip(self.fn.state_specs, self.updated):
            a = state.get(spec.name)
            if not (type(a) is np.ndarray and a.dtype == spec.dtype and a.shape == spec.shape
                    and a.flags.c_contiguous and a.flags.aligned and (a.flags.writeable or not updated)):
                if a is None:
                    raise GraphcError(f"{name}: state[{spec.name!r}] is missing")
                try:
                    a = np.array(convert_feed(spec, a), order="C", copy=True)
                except FeedError as exc:
                    raise GraphcError(f"{name}: state[{spec.name!r}] was replaced by an unusable value: "
                                      f"{str(exc).removeprefix('placeholder ')}") from None
                state[spec.name] = a
            arrays.append(a)
        return arrays


def check_arguments(name: str, specs: Sequence[_Spec], args: tuple) -> tuple[np.ndarray, ...]:
    """Arrays for `args` under the input rules of `Session.run` (exact arrays pass as they are)."""
    if len(args) != len(specs):
        raise TypeError(f"{name} takes {len(specs)} input array(s), got {len(args)}")
    return tuple(a if type(a) is np.ndarray and a.dtype == spec.dtype and a.flags.c_contiguous
                 and len(a.shape) == len(spec.shape) else convert_feed(spec, a) for spec, a in zip(specs, args))


def no_match(name: str, shapes: Sequence[tuple[int, ...]], known: Sequence[Sequence[Sequence[int]]]) -> FeedError:
    """The error for input shapes that no exported signature has."""
    listed = "; ".join(", ".join(str(tuple(s)) for s in sig) for sig in known)
    return FeedError(f"{name}: input shapes {', '.join(str(tuple(s)) for s in shapes)} match no exported "
                     f"signature (exported: {listed})")


def _symbol(library: ctypes.CDLL, symbol: str, restype: Any, argtypes: list) -> Any:
    try:
        fn = getattr(library, symbol)
    except AttributeError:
        raise GraphcError(f"{library._name} has no function {symbol}") from None
    fn.restype, fn.argtypes = restype, argtypes
    return fn


def _load_state(path: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The state arrays (the manifest is validated: offsets and sizes fit the checked file)."""
    if not manifest["state"]:
        return {}
    blob = mf.check_file(path, manifest["state_file"], "state file")
    state = {}
    for e in manifest["state"]:
        dtype, shape = np.dtype(e["dtype"]), tuple(e["shape"])
        state[e["name"]] = np.frombuffer(blob, dtype, e["nbytes"] // dtype.itemsize, e["offset"]).reshape(shape).copy()
    return state


def _scipy_gemm() -> tuple[int | None, int | None]:
    """Addresses of scipy's Fortran-convention sgemm and dgemm, or (None, None) without scipy."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None, None
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    capi = cython_blas.__pyx_capi__
    return tuple(get_pointer(capi[n], get_name(capi[n])) for n in ("sgemm", "dgemm"))
