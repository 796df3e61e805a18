"""Random-graph fuzzing over the whole op registry (issue 12's standing harness).

Each case composes a few op applications drawn from the LLVM op table
(tests/backend/llvm/test_llvm_ops.py: every registered op has an entry there, so ops added
later are fuzzed without touching this file), wires them through each other, adds
gradients with random seeds, and checks that

* the LLVM backend (fed arrays in odd layouts: Fortran order, negative strides,
  read-only, unaligned) agrees with the reference interpreter, values and gradients;
* `gc.function` over the same graph agrees, and so does (for some cases) an exported
  library called through `gc.load_exported`;
* bad cases fail the same way: a `GraphcError` on both backends, never another exception.

A mismatch is narrowed to the first node that disagrees when run alone on the reference
values of its inputs; every failure prints a reproduction (graph text and feeds).

    python tests/fuzz/graph_fuzz.py --cases 20000 [--seed S] [--export-every K] [--timeout T] [--jobs J]

`gc.print` nodes in the random graphs print nothing here: the cases run with stdout (Python's and
file descriptor 1, which an exported library's printf writes to) sent to /dev/null. A case
that runs longer than the timeout is a hang: a watchdog process prints its seed and aborts
the campaign, whose faulthandler prints every thread's stack; a case that kills the process
is reported by the watchdog too. `--jobs J` splits the seeds into J child campaigns and
resumes each after a hang or a crash. A campaign compiles into a compile cache of its own
(a temporary directory capped at 100 MB) unless GRAPHC_CACHE_DIR is set: its thousands of
single-use programs would fill the shared cache, evict everyone's entries and slow its trims.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.errors import GraphcError
from graphc.ir.traverse import toposort
from graphc.ops.registry import all_ops

if str(Path(__file__).parents[1]) not in sys.path:  # run as a script: the table imports tests/testkit.py
    sys.path.insert(0, str(Path(__file__).parents[1]))
_spec = importlib.util.spec_from_file_location(
    "fuzz_op_table", Path(__file__).parents[1] / "backend" / "llvm" / "test_llvm_ops.py")
TABLE = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = TABLE  # dataclasses look their module up
_spec.loader.exec_module(TABLE)
import fuzz_layers  # noqa: E402  (beside this file: on sys.path once the table's directory is)

TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-9}
DISCONTINUOUS = {"floor", "ceil", "round", "sign", "argmax", "argmin", "mod", "floordiv", "fmod", "remainder"}
LAYOUTS = ("c", "fortran", "reversed", "readonly", "unaligned")
# Disagreements found by this fuzzer and not fixed yet, by the op that disagrees on its own: they are
# printed as "known" and do not fail `make test`. Remove an entry when its op is fixed.
KNOWN: dict[str, str] = {}
# The documented refusals of None dims while building (docs/ops.md): LAPACK ops' matrix dims, and the
# spatial, channel and filter dims of convolutions, pools and conv_patches, must be static.
STATIC_ONLY = "must be known when the graph is built"
LAYER_SHARE = 0.15  # of the cases: one step is a GEMM above the tiled kernel's thresholds, a layer or an SGD step


@dataclass
class Finding:
    """One disagreement, with what is needed to reproduce it."""

    seed: int
    kind: str
    detail: str
    graph_text: str
    feeds: dict = field(default_factory=dict)

    def report(self) -> str:
        feeds = "\n".join(f"  {name} = np.array({np.array2string(v, separator=', ', threshold=10**6, precision=17)}, "
                          f"dtype=np.{v.dtype.name})" for name, v in self.feeds.items())
        return (f"== fuzz finding (seed {self.seed}): {self.kind}\n{self.detail}\n-- graph\n{self.graph_text}"
                f"\n-- feeds\n{feeds or '  (none)'}\n-- replay: python tests/fuzz/graph_fuzz.py --seed {self.seed} "
                "--cases 1\n")


# --- building a random graph -------------------------------------------------------------------

def _pick_case(rng: np.random.Generator, op: str):
    case = TABLE.CASES[op][rng.integers(len(TABLE.CASES[op]))]
    return case, np.dtype(case.dtypes[rng.integers(len(case.dtypes))])


def _adapt(rng, pool: list, shape: tuple, dtype: np.dtype):
    """A pool tensor brought to (shape, dtype) by reshape/cast, or None."""
    size = int(np.prod(shape, dtype=np.int64))
    fits = [t for t in pool if t.dtype is not None and None not in t.shape
            and int(np.prod(t.shape, dtype=np.int64)) == size]
    if not fits or rng.random() < 0.3:
        return None
    t = fits[rng.integers(len(fits))]
    if t.dtype != dtype:
        if dtype == np.bool_:
            t = t > 0
        else:
            t = gc.cast(t, dtype)
    return t if t.shape == tuple(shape) else gc.reshape(t, shape)


class Builder:
    """Builds one random graph; remembers its placeholders and their fed values."""

    def __init__(self, rng: np.random.Generator, unknown: np.random.Generator | None):
        self.rng, self.unknown = rng, unknown  # `unknown` draws which placeholder dims are declared None
        self.feeds: dict = {}
        self.pool: list = []
        self.effects: list = []  # ops fetched for their side effects (an SGD step's train op)

    def leaf(self, shape: tuple, dtype: np.dtype, domain: str, static: int = 0) -> gc.Tensor:
        """A placeholder fed a drawn value; its last `static` dims are never declared None."""
        value = TABLE.draw(self.rng, shape, dtype, domain)
        if dtype.kind == "f" and value.size and self.rng.random() < 0.15:  # sprinkle NaN/inf/-0.0
            flat = value.reshape(-1)
            flat[self.rng.integers(value.size)] = self.rng.choice([np.nan, np.inf, -np.inf, -0.0])
        declared = tuple(None if self.unknown is not None and self.unknown.random() < 0.4 and k < len(shape) - static
                         else d for k, d in enumerate(shape))
        ph = gc.placeholder(dtype, declared)
        self.feeds[ph] = np.asarray(value, dtype=dtype)
        return ph

    def step(self, op: str) -> gc.Tensor | None:
        case, dtype = _pick_case(self.rng, op)
        if case.fixed is not None:
            arrays = [np.asarray(a) for a in case.fixed]
            args = [self._fixed_leaf(a) for a in arrays]
        else:
            doms = (case.domains,) * len(case.shapes) if isinstance(case.domains, str) else case.domains
            args = []
            for shape, dom in zip(case.shapes, doms):
                t = _adapt(self.rng, self.pool, shape, dtype)
                args.append(t if t is not None else self.leaf(tuple(shape), dtype, dom))
        out = case.build(*args)
        if out.dtype is not None:
            self.pool.append(out)
        return out

    def _fixed_leaf(self, value: np.ndarray) -> gc.Tensor:
        ph = gc.placeholder(value.dtype, value.shape)
        self.feeds[ph] = value
        return ph


def random_graph(seed: int, unknown: bool, n_ops: int | None = None):
    """(fetches, feeds, rng) of the random graph of `seed`; with `unknown`, some placeholder dims are None."""
    rng = np.random.default_rng(seed)
    ops = sorted(op for op in all_ops() if op in TABLE.CASES)
    b = Builder(rng, np.random.default_rng([seed, 1]) if unknown else None)
    n = n_ops if n_ops is not None else int(rng.integers(1, 6))
    # A share of the cases gets one step of fuzz_layers at a random place, drawn from a stream of its own
    # (the graphs of the other seeds stay as they were).
    pick = np.random.default_rng([seed, 2])
    layer_at = int(pick.integers(n)) if pick.random() < LAYER_SHARE else -1
    outs = []
    for k in range(n):
        if k == layer_at:
            outs.append(fuzz_layers.step(b, pick))
            continue
        op = ops[rng.integers(len(ops))]
        outs.append(b.step(op))
    layer = [outs[layer_at]] if layer_at >= 0 else []
    fetches = list(dict.fromkeys(outs[-2:] + [outs[rng.integers(len(outs))]] + layer + b.effects))
    used = set(toposort(fetches))
    return fetches, {p: v for p, v in b.feeds.items() if p in used}, rng


# --- running and comparing ------------------------------------------------------------------------

def odd_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout."""
    if layout == "fortran" and value.ndim:
        return np.asfortranarray(value)
    if layout == "reversed" and value.ndim:
        flipped = np.ascontiguousarray(value[::-1])
        return flipped[::-1]
    if layout == "readonly":
        out = value.copy()
        out.setflags(write=False)
        return out
    if layout == "unaligned" and value.size:
        raw = np.empty(value.nbytes + 1, np.uint8)
        out = raw[1:].view(value.dtype).reshape(value.shape)
        out[...] = value
        return out
    return value


def tolerances(outputs: list) -> list[float]:
    """Per output: the loosest float tolerance among the dtypes it is computed from."""
    return [max((TOL.get(n.dtype, 0.0) for n in toposort([o]) if n.dtype is not None), default=0.0)
            for o in outputs]


def _close(got, want, tol: float = 0.0) -> str | None:
    """Why got differs from want (None if they agree)."""
    if want is None:
        return None if got is None else f"expected no value, got {type(got).__name__}"
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"got {got.dtype}{got.shape}, want {want.dtype}{want.shape}"
    tol = max(tol, TOL.get(want.dtype, 0.0))
    if not tol or want.dtype.kind != "f":
        bad = ~((got == want) | (np.isnan(got) & np.isnan(want)) if want.dtype.kind == "f" else (got == want))
    else:
        scale = np.nanmax(np.abs(np.where(np.isfinite(want), want, 0)), initial=1.0)
        with np.errstate(invalid="ignore"):
            bad = ~(np.isclose(got, want, rtol=tol, atol=tol * scale, equal_nan=True))
    if not bad.any():
        return None
    i = tuple(int(k) for k in np.argwhere(bad)[0])
    return f"{int(bad.sum())} of {bad.size} elements differ; first at {i}: got {got[i]!r}, want {want[i]!r}"


# The session route builds the symbolic template at once for None dims (by default the first size runs
# a program specialized to it, and the template comes with a second size); gc.function's route keeps the
# default options.
SYMBOLIC = gc.CompileOptions(specialize=False)


def _run(backend: str, graph: gc.Graph, fetches: list, feeds: dict, state: tuple = (), options=None):
    """The fetched values, then the values of the variables `state` after the run."""
    with gc.Session(graph, backend=backend, options=options) as sess:
        return list(sess.run(fetches, feeds)) + [sess.variable_value(v) for v in state]


def _outcome(fn):
    """('ok', value) | ('graphc', error) | ('crash', traceback text)."""
    try:
        return "ok", fn()
    except GraphcError as exc:
        return "graphc", exc
    except Exception:  # noqa: BLE001  (any other exception is what the fuzzer looks for)
        return "crash", traceback.format_exc()


def _isolate(graph: gc.Graph, fetches: list, feeds: dict) -> tuple[str, str, dict] | None:
    """The first node that disagrees on its own (its inputs fed their reference values)."""
    nodes = [n for n in toposort(fetches) if n.dtype is not None and n.op not in ("placeholder", "constant",
                                                                                   "variable", "assign")]
    values = dict(zip(nodes, _run("reference", graph, nodes, feeds)))
    values.update(feeds)
    for node in nodes:
        if any(i not in values and i.op not in ("constant", "variable") for i in node.inputs):
            continue
        g = gc.Graph()
        with g.as_default():
            phs, sub = [], {}
            for i in node.inputs:
                if i.op in ("constant", "variable"):
                    phs.append(g.make(i.op, (), dict(i.attrs)))
                    continue
                p = gc.placeholder(i.dtype, np.shape(values[i]), name=i.name)
                phs.append(p)
                sub[p] = np.asarray(values[i])
            alone = g.make(node.op, tuple(phs), dict(node.attrs))
        want = _outcome(lambda: _run("reference", g, [alone], sub))
        got = _outcome(lambda: _run("llvm", g, [alone], sub))
        why = _compare(got, want, tolerances([alone]))
        if why:
            op = f"{node.op} (llvm as accurate)" if _as_accurate(node, sub, got, want) else node.op
            return why, gc.as_text([alone]), {p.name: v for p, v in sub.items()}, op
    return None


def _as_accurate(node, sub: dict, got, want) -> bool:
    """Whether a float32 node that disagrees alone is, on the LLVM backend, at least as close to its
    value computed in float64 (the reference backend, inputs widened) as the reference's float32
    result is: rounding that the reference does worse (a float32 sum of terms near 1e7 that cancel
    to a few units: seed 6211421), not a wrong answer. Only for nodes whose inputs are all fed."""
    if got[0] != "ok" or want[0] != "ok" or node.dtype != np.float32 or len(sub) != len(node.inputs):
        return False
    if any(np.asarray(v).dtype != np.float32 for v in sub.values()):
        return False
    g = gc.Graph()
    with g.as_default():
        wide = {gc.placeholder(gc.float64, np.shape(v)): np.asarray(v, np.float64) for v in sub.values()}
        attrs = {k: (gc.float64 if v is gc.float32 else v) for k, v in node.attrs.items()}
        exact = _outcome(lambda: _run("reference", g, [g.make(node.op, tuple(wide), attrs)], wide))
    if exact[0] != "ok" or np.shape(exact[1][0]) != np.shape(want[1][0]):
        return False
    truth = np.asarray(exact[1][0], np.float64)
    err_llvm = np.abs(np.asarray(got[1][0], np.float64) - truth)
    err_ref = np.abs(np.asarray(want[1][0], np.float64) - truth)
    with np.errstate(invalid="ignore"):
        return bool(np.all((err_llvm <= err_ref) | (np.isnan(err_llvm) & np.isnan(err_ref))))


def _compare(got, want, tols: list[float]) -> str | None:
    if got[0] == "crash":
        return "non-graphc exception:\n" + got[1]
    if want[0] == "crash":
        return "reference raised a non-graphc exception:\n" + want[1]
    if got[0] != want[0]:
        return f"outcomes differ: llvm {got[0]} {got[1] if got[0] == 'graphc' else ''}; reference {want[0]} " \
               f"{want[1] if want[0] == 'graphc' else ''}"
    if got[0] == "graphc":
        return None
    for k, (g, w, tol) in enumerate(zip(got[1], want[1], tols)):
        why = _close(g, w, tol)
        if why:
            return f"output {k}: {why}"
    return None


def _with_gradients(fetches: list, feeds: dict, rng, graph: gc.Graph):
    """fetches plus d(<fetches, random seeds>)/d(float placeholders); None when not differentiable."""
    floats = [f for f in fetches if f.dtype is not None and f.dtype.kind == "f"]
    xs = [p for p in feeds if p.dtype.kind == "f"]
    if not floats or not xs:
        return None
    ref = _outcome(lambda: _run("reference", graph, floats, feeds))
    if ref[0] != "ok":
        return None
    seeds = [TABLE.draw(rng, np.shape(v), f.dtype) for f, v in zip(floats, ref[1])]
    grads = gc.gradients(floats, xs, grad_ys=seeds)
    return [g for g in grads if g is not None]


def check_case(seed: int, export_dir: str | None = None) -> list[Finding]:
    """Build and check one random case; the findings (empty when everything agrees)."""
    graph = gc.Graph()
    findings: list[Finding] = []
    with graph.as_default():
        built = _outcome(lambda: random_graph(seed, unknown=seed % 2 == 1))
        if built[0] == "crash" and _raised_in_graphc(built[1]):
            return [Finding(seed, "building crashed inside graphc", built[1], "(building)")]
        if built[0] != "ok" and seed % 2 == 1:
            # A refusal with None dims must be one of the documented ones (STATIC_ONLY); the fuzzer then
            # uses static dims.
            static = _outcome(lambda: random_graph(seed, unknown=False))
            if static[0] == "ok" and not (built[0] == "graphc" and STATIC_ONLY in str(built[1])):
                return [Finding(seed, "refused with None dims (static dims build)", str(built[1]), "(building)")]
            built = static
        if built[0] == "crash":
            return [Finding(seed, "building crashed", built[1], "(building)")]
        if built[0] == "graphc":
            return []  # a refusal while building is allowed (e.g. an op's attribute does not fit)
        fetches, feeds, rng = built[1]
        grads = _outcome(lambda: _with_gradients(fetches, feeds, rng, graph))
        if grads[0] == "crash":
            return [Finding(seed, "building gradients crashed", grads[1], gc.as_text(fetches), _named(feeds))]
        documented = ("has no derivative", "needs a bounded loop")  # docs/ops.md, docs/control_flow.md
        if grads[0] == "graphc" and not any(d in str(grads[1]) for d in documented):
            findings.append(Finding(seed, "gradients refused", str(grads[1]), gc.as_text(fetches), _named(feeds)))
        outputs = fetches + ((grads[1] or []) if grads[0] == "ok" else [])
    layout = LAYOUTS[rng.integers(len(LAYOUTS))]
    odd = {p: odd_layout(v, layout) for p, v in feeds.items()}
    # the variables the run assigns: compared after it too (an SGD step's updates, folded into products),
    # to the tolerance of the value assigned (a float32 value cast to a float64 variable: seed 6102410)
    writes = {}
    for n in toposort(outputs):
        if n.op == "assign":
            writes.setdefault(n.inputs[0], n)
    state = tuple(writes)
    want = _outcome(lambda: _run("reference", graph, outputs, feeds, state))
    text = gc.as_text(outputs)
    pure = [outputs[k] for k, o in enumerate(outputs) if o.dtype is not None and o.op != "assign"]
    want_pure = (want[0], [v for o, v in zip(outputs, want[1]) if o in pure]) if want[0] == "ok" else want
    routes = (("llvm session", lambda: _run("llvm", graph, outputs, odd, state, SYMBOLIC), want,
               outputs + list(writes.values())),
              ("gc.function", lambda: _function(pure, feeds, odd), want_pure, pure))  # no side effects there
    for route, run, expected, outs in routes[:2 if pure else 1]:
        why = _compare(_outcome(run), expected, tolerances(outs))
        if why:
            findings.append(_narrow(seed, f"{route} ({layout} feeds)", why, graph, outputs, feeds, text))
            break
    # Exported libraries carry no LAPACK and no MPI (docs/export.md): export refuses these ops by design.
    refused = any(n.opdef.kind in ("lapack", "collective") for n in toposort(pure))
    if export_dir is not None and want[0] == "ok" and pure and not findings and not refused:
        why = _compare(_outcome(lambda: _exported(pure, feeds, odd, export_dir, seed)), want_pure, tolerances(pure))
        if why:
            findings.append(Finding(seed, "export/load round trip", why, text, _named(feeds)))
    return findings


def _raised_in_graphc(trace: str) -> bool:
    """Whether a traceback's innermost frame is in the graphc package (not in the op table's builders)."""
    frames = [line for line in trace.splitlines() if line.strip().startswith("File ")]
    return bool(frames) and f"{Path(gc.__file__).parent}" in frames[-1]


def _named(feeds: dict) -> dict:
    return {p.name: v for p, v in feeds.items()}


def _narrow(seed, route, why, graph, outputs, feeds, text) -> Finding:
    alone = _outcome(lambda: _isolate(graph, outputs, feeds))
    if alone[0] == "ok" and alone[1] is not None:
        detail, sub_text, sub_feeds, op = alone[1]
        if op.endswith(" (llvm as accurate)"):
            return Finding(seed, f"{route}: tolerated (llvm as accurate as the reference)", detail, sub_text,
                           sub_feeds)
        known = f" (known: {KNOWN[op]})" if op in KNOWN else ""
        return Finding(seed, f"{route}: one node disagrees{known}", detail, sub_text, sub_feeds)
    if alone[0] == "ok" and any(n.op in DISCONTINUOUS or (n.dtype is not None and n.dtype.kind != "f"
                                                         and any(i.dtype is not None and i.dtype.kind == "f"
                                                                 for i in n.inputs))
                                for n in toposort(outputs)):
        return Finding(seed, f"{route}: tolerated (rounding flips a discontinuous op)", why, text, _named(feeds))
    return Finding(seed, route, why, text, _named(feeds))


def _function(outputs: list, feeds: dict, odd: dict):
    phs = list(feeds)
    fn = gc.function(phs, outputs)
    return fn(*[odd[p] for p in phs])


def _exported(outputs: list, feeds: dict, odd: dict, directory: str, seed: int):
    phs = list(feeds)
    fn = gc.function(phs, outputs)
    name = f"fuzz{seed}"
    fn.export(directory, name, signatures=[[np.shape(feeds[p]) for p in phs]])
    lib = gc.load_exported(directory, name)
    out = lib(*[odd[p] for p in phs])
    return out if isinstance(out, (list, tuple)) else [out]


def is_tolerated(f: Finding) -> bool:
    """Rounding flips, nodes the LLVM backend computes at least as accurately as the reference, and
    known findings (listed in KNOWN) do not count."""
    return f.kind.endswith(("(rounding flips a discontinuous op)", "(llvm as accurate as the reference)")) \
        or "(known: " in f.kind


@contextlib.contextmanager
def _silenced():
    """Python's stdout and file descriptor 1 go to /dev/null (gc.print in the random graphs)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio's buffer (an exported library's printf) goes to /dev/null too
        os.dup2(saved, 1)
        os.close(saved)


_WATCHDOG = """
import os, select, signal, sys
parent, timeout, seed = int(sys.argv[1]), float(sys.argv[2]), None
while True:
    if not select.select([0], [], [], timeout if seed is not None else None)[0]:
        sys.stderr.write(f"== fuzz finding (seed {seed}): HANG (the case ran longer than {timeout:.0f} s)\\n"
                         f"-- replay: python tests/fuzz/graph_fuzz.py --seed {seed} --cases 1; "
                         f"resume the campaign with --seed {seed + 1}\\n")
        sys.stderr.flush()
        os.kill(parent, signal.SIGABRT)
        break
    data = os.read(0, 4096)
    if not data:
        if seed is not None:
            sys.stderr.write(f"== fuzz finding (seed {seed}): the process died during this case\\n"
                             f"-- replay: python tests/fuzz/graph_fuzz.py --seed {seed} --cases 1; "
                             f"resume the campaign with --seed {seed + 1}\\n")
        break
    last = data.split()[-1]
    seed = None if last == b"-" else int(last)
"""


class _Watchdog:
    """A child process that, when a case runs longer than `timeout` s, prints its seed and sends this
    process SIGABRT (faulthandler then prints every thread's stack), and that names the case during
    which this process died. A Python timer thread would not do: LAPACK hangs inside numpy while
    holding the GIL."""

    def __init__(self, timeout: float):
        faulthandler.enable()
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout)],
                                     stdin=subprocess.PIPE)

    @contextlib.contextmanager
    def case(self, seed: int):
        self._say(str(seed))
        try:
            yield
        finally:
            self._say("-")

    def _say(self, word: str) -> None:
        self.proc.stdin.write(f"{word}\n".encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def campaign(first_seed: int, cases: int, export_every: int = 0, out=sys.stdout,
             timeout: float = 600.0) -> list[Finding]:
    """Run `cases` seeds from `first_seed`; print each real finding; return them all."""
    findings: list[Finding] = []
    start = time.time()
    watchdog = _Watchdog(timeout)
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(watchdog):
        for k in range(cases):
            seed = first_seed + k
            export = tmp if export_every and k % export_every == 0 else None
            try:
                with watchdog.case(seed), _silenced():
                    found = check_case(seed, export)
            except Exception:  # noqa: BLE001  (a harness error is reported, and the campaign goes on)
                found = [Finding(seed, "fuzz harness error", traceback.format_exc(), "(harness)")]
            for f in found:
                findings.append(f)
                if out is not None and not is_tolerated(f):
                    print(f.report(), file=out, flush=True)
            if out is not None and (k + 1) % 500 == 0:
                real = sum(not is_tolerated(f) for f in findings)
                print(f"-- {k + 1} cases, {real} findings, {time.time() - start:.0f} s", file=out, flush=True)
    return findings


def sharded(first: int, cases: int, jobs: int, options: list[str]) -> int:
    """The campaign as `jobs` child campaigns over contiguous seed ranges, each resumed after a hang
    or a crash (counted as findings); their output passes through, each line tagged with its shard.
    Returns the number of real findings."""
    bounds = [first + cases * j // jobs for j in range(jobs + 1)]
    lock, totals = threading.Lock(), []

    def shard(tag: str, start: int, end: int) -> None:
        found = 0
        while start < end:
            proc = subprocess.Popen([sys.executable, __file__, "--seed", str(start), "--cases", str(end - start),
                                     *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            resume = None
            for line in proc.stdout:
                with lock:
                    print(f"[{tag}] {line}", end="", flush=True)
                if m := re.search(r"resume the campaign with --seed (\d+)", line):
                    resume = int(m[1])
                if m := re.match(r"graph fuzz: .*: (\d+) findings", line):
                    found += int(m[1])
            if proc.wait() in (0, 1) or resume is None:
                found += proc.returncode not in (0, 1)
                break
            found, start = found + 1, resume
        with lock:
            totals.append(found)

    threads = [threading.Thread(target=shard, args=(f"{a}-{b - 1}", a, b)) for a, b in zip(bounds, bounds[1:]) if b > a]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(totals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    parser.add_argument("--export-every", type=int, default=50, help="export/load every K-th case (0: never)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds after which a case is a hang")
    parser.add_argument("--jobs", type=int, default=1, help="child campaigns run in parallel")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 10**6 * 1000
    with contextlib.ExitStack() as stack:
        if "GRAPHC_CACHE_DIR" not in os.environ:  # shards inherit it
            os.environ["GRAPHC_CACHE_DIR"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="graph-fuzz-"))
            os.environ.setdefault("GRAPHC_CACHE_MAX_MB", "100")
        return _main(args, seed)


def _main(args: argparse.Namespace, seed: int) -> int:
    if args.jobs > 1:
        start = time.time()
        real = sharded(seed, args.cases, args.jobs, ["--export-every", str(args.export_every),
                                                     "--timeout", str(args.timeout)])
        print(f"graph fuzz: {args.cases} cases from seed {seed} in {args.jobs} jobs: {real} findings, "
              f"{time.time() - start:.0f} s")
        return 1 if real else 0
    findings = campaign(seed, args.cases, args.export_every, timeout=args.timeout)
    real = [f for f in findings if not is_tolerated(f)]
    print(f"graph fuzz: {args.cases} cases from seed {seed}: {len(real)} findings "
          f"({len(findings) - len(real)} tolerated: rounding flips or known, listed in KNOWN)")
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
