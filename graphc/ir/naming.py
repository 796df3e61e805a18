"""``name=`` on every public op builder, by one wrapper (`accepts_name`) applied where the API is assembled.

``gc.add(a, b, name="s")`` builds inside ``name_scope("s")`` (so the nodes a composite
makes are ``s/exp``, ``s/sum``, ... as in TF1) and then names the result ``s`` (tuple
results: ``s``, ``s:1``, ``s:2``, ...). Names never change interning: a node that exists
already is returned as is; it takes the name if it still has its automatic one, else the
name becomes an alias of it (`Graph.set_name`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .graph import Graph, Tensor, check_name, get_default_graph


def _graph_of(values: Iterable[Any]) -> Graph:
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
        if isinstance(v, (list, tuple)):
            for w in v:
                if isinstance(w, Tensor):
                    return w.graph
    return get_default_graph()


def _name_results(out: Any, scope: str) -> None:
    """Name a builder's result(s) after the scope the builder ran in."""
    parts = [out] if isinstance(out, Tensor) else list(out) if isinstance(out, (tuple, list)) else []
    for i, t in enumerate(parts):
        if isinstance(t, Tensor):
            g = t.graph
            g.set_name(t, scope if i == 0 else g.unique_name_exact(f"{scope}:{i}"))


def accepts_name(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with a keyword ``name=None`` (unchanged if it takes one already)."""
    if _takes_name(fn):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, name: str | None = None, **kwargs: Any) -> Any:
        if name is None:
            return fn(*args, **kwargs)
        check_name(name, fn.__name__)
        graph = _graph_of([*args, *kwargs.values()])
        with graph.name_scope(name) as scope:
            out = fn(*args, **kwargs)
        _name_results(out, scope[:-1])
        return out

    wrapper.__signature__ = _NamedSignature(fn)  # type: ignore[attr-defined]
    return wrapper


def _takes_name(fn: Callable[..., Any]) -> bool:
    inner = inspect.unwrap(fn, stop=lambda f: hasattr(f, "__signature__"))  # what inspect.signature reads
    if inspect.isfunction(inner) and not hasattr(inner, "__signature__"):
        code = inner.__code__  # a plain function: its code lists its parameters (faster than a Signature)
        count = code.co_argcount + code.co_kwonlyargcount
        count += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
        return "name" in code.co_varnames[:count]
    return "name" in inspect.signature(fn).parameters


class _NamedSignature(inspect.Signature):
    """A wrapped builder's signature: its function's, plus the keyword ``name=None`` before any
    ``**kwargs``. Made when first read (help, IDEs, tests) rather than for each of the ~140
    builders on ``import graphc``: the slots `inspect.Signature` reads are filled on first use."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]):  # (Signature's own __init__ runs on first use)
        self._fn = fn

    def __getattr__(self, attr: str) -> Any:
        if attr not in ("_parameters", "_return_annotation"):
            raise AttributeError(attr)
        sig = inspect.signature(self._fn)
        params = list(sig.parameters.values())
        keyword = inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None")
        at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        inspect.Signature.__init__(self, params[:at] + [keyword] + params[at:], return_annotation=sig.return_annotation)
        return getattr(self, attr)


NOT_BUILDERS = frozenset({"einsum_path", "enable_x64", "set_seed", "update_ops"})  # public functions, not op builders


def add_names(namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Replace each builder among `names` in `namespace` (a module's globals) by its `accepts_name` form."""
    for n in names:
        fn = namespace[n]
        if n not in NOT_BUILDERS and inspect.isfunction(fn):
            namespace[n] = accepts_name(fn)
