"""W3 through gc.function: y = x*w + b on 4-element float32 vectors, microseconds per call.

Issue 7's target: a tiny gc.function call within 2x of numpy's own time for the same
expression. Rows: w and b fed as inputs (a pure function), w and b as variables (each
call then takes the session's variable lock), each with and without `trust_input`, and
the same function exported and called through ctypes (`gc.load_exported`). The gradient
rows differentiate sum(y) with respect to w and b.
"""

from __future__ import annotations

import tempfile

import numpy as np
from _timing import attempt, compare, describe, graphc_status, measure, parse_args, table

X = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
W = np.array([0.5, 0.25, -1.0, 2.0], np.float32)
B = np.array([0.1, 0.2, 0.3, 0.4], np.float32)


def numpy_value(x, w, b):
    return x * w + b


def numpy_value_grad(x, w, b):
    y = x * w + b
    gy = np.ones_like(y)
    return y, gy * x, gy


def _check(got, want) -> None:
    got = got if isinstance(got, list) else [got]
    want = want if isinstance(want, tuple) else (want,)
    if not all(np.allclose(g, w) for g, w in zip(got, want)):
        raise AssertionError("graphc disagrees with numpy")


def functions(gc, grad: bool) -> dict:
    """name -> (callable, its arguments) for each graphc variant."""
    out = {}
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (4,), name="x")
        w, b = gc.placeholder(gc.float32, (4,), name="w"), gc.placeholder(gc.float32, (4,), name="b")
        y = x * w + b
        pure = gc.function([x, w, b], [y, *gc.gradients(gc.sum(y), [w, b])] if grad else y)
        out["gc.function, w b inputs"] = (pure, (X, W, B))
        trusted = gc.function([x, w, b], [y, *gc.gradients(gc.sum(y), [w, b])] if grad else y)
        trusted(X, W, B)
        trusted.trust_input = True
        out["  + trust_input"] = (trusted, (X, W, B))
        with tempfile.TemporaryDirectory(prefix="bench-function-") as directory:
            pure.export(directory, "w3")  # the loaded library stays mapped after the files go
            out["  exported, ctypes"] = (gc.load_exported(directory, "w3"), (X, W, B))
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (4,), name="x")
        w, b = gc.Variable(W, name="w"), gc.Variable(B, name="b")
        y = x * w + b
        out["gc.function, w b variables"] = (gc.function([x], [y, *gc.gradients(gc.sum(y), [w, b])] if grad else y),
                                             (X,))
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    gc, backend = graphc_status()
    print(describe(backend))
    for grad in (False, True):
        reference = numpy_value_grad if grad else numpy_value
        results = {"numpy": measure(lambda: reference(X, W, B), args.repeat, args.target)}
        if gc is None:
            results["graphc"] = backend
        else:
            for name, (fn, fn_args) in functions(gc, grad).items():
                _check(fn(*fn_args), reference(X, W, B))
                results[name] = attempt(lambda: measure(lambda: fn(*fn_args), args.repeat, args.target))
        print(table(f"W3 y = x*w + b, 4 float32, {'value + grad' if grad else 'value'}, per call",
                    compare(results), ["impl", "median", "spread", "speed vs numpy"]))


if __name__ == "__main__":
    main()
