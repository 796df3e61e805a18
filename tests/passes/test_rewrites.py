"""Each rewrite rule on a small graph: its text before/after, and values preserved."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backend.interpreter import evaluate
from graphc.backend.llvm.backend import LLVM
from graphc.errors import GraphcError
from graphc.passes import simplify, stabilize
from graphc.passes.manager import PASSES, Instrumentation, run_pipeline
from graphc.passes.module import Module
from graphc.passes.pipeline import PIPELINES
from graphc.passes.rewrite import P, Rule, V, run_rules
from graphc.passes.verify import VerifyError

GOLDEN = Path(__file__).parent / "golden"
SPECIAL = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e30, -1e-30, 7.0], np.float32)


@gc.custom_gradient
def _clipped_identity(x):
    return gc.identity(x), lambda g: gc.clip(g, -1.0, 1.0)


def _x():
    return gc.placeholder(gc.float32, (10,), name="x")


# (name, builder, pass, ops that must be gone afterwards, ops that must appear)
CASES = [
    ("add-zero", lambda x: x + 0.0, "simplify", {"add"}, set()),
    ("sub-zero", lambda x: x - 0.0, "simplify", {"subtract"}, set()),
    ("mul-one", lambda x: 1.0 * x, "simplify", {"multiply"}, set()),
    ("div-one", lambda x: x / 1.0, "simplify", {"divide"}, set()),
    ("pow-one", lambda x: x ** 1.0, "simplify", {"power"}, set()),
    ("pow-two", lambda x: x.graph.make("power", (x, gc.constant(2.0))), "simplify", {"power"}, {"square"}),
    ("mul-minus-one", lambda x: x * -1.0, "simplify", {"multiply"}, {"negative"}),
    ("neg-neg", lambda x: gc.negative(-x), "simplify", {"negative"}, set()),
    ("add-neg", lambda x: x + (-gc.exp(x)), "simplify", {"add", "negative"}, {"subtract"}),
    ("sub-neg", lambda x: x - (-gc.exp(x)), "simplify", {"subtract", "negative"}, {"add"}),
    ("identity", lambda x: gc.identity(x) * 3.0, "simplify", {"identity"}, set()),
    ("stop-gradient", lambda x: gc.stop_gradient(x) * 3.0, "simplify", {"stop_gradient"}, set()),
    ("custom-gradient", lambda x: _clipped_identity(x) * 2.0, "simplify", {"custom_vjp"}, set()),
    ("reshape-reshape", lambda x: gc.reshape(gc.reshape(x, (2, 5)), (5, 2)), "simplify", set(), set()),
    ("transpose-transpose", lambda x: gc.transpose(gc.transpose(gc.reshape(x, (2, 5)))), "simplify",
     {"transpose"}, set()),
    ("noop-transpose", lambda x: x.graph.make("transpose", (x,), {"perm": (0,)}) * 2.0, "simplify", {"transpose"},
     set()),
    ("noop-reshape", lambda x: x.graph.make("reshape", (x,), {"shape": (10,)}) * 2.0, "simplify", {"reshape"}, set()),
    ("noop-reshape-like", lambda x: x.graph.make("reshape_like", (x, x)) * 2.0, "simplify", {"reshape_like"}, set()),
    ("noop-broadcast", lambda x: x.graph.make("broadcast_to", (x,), {"shape": (10,)}) * 2.0, "simplify",
     {"broadcast_to"}, set()),
    ("noop-broadcast-like", lambda x: x.graph.make("broadcast_like", (x, x)) * 2.0, "simplify", {"broadcast_like"},
     set()),
    ("noop-sum", lambda x: x.graph.make("sum", (x,), {"axis": (), "keepdims": False}) * 2.0, "simplify", {"sum"},
     set()),
    ("cast-same", lambda x: x.graph.make("cast", (x,), {"dtype": np.dtype(np.float32)}) * 2.0, "simplify", {"cast"},
     set()),
    ("log1p", lambda x: gc.log(1.0 + x), "stabilize", {"log", "add"}, {"log1p"}),
    ("expm1", lambda x: gc.exp(x) - 1.0, "stabilize", {"exp", "subtract"}, {"expm1"}),
    ("logsumexp", lambda x: gc.log(gc.sum(gc.exp(x))), "stabilize", set(), {"max"}),
    ("log-softmax", lambda x: gc.log(gc.nn.softmax(x)), "stabilize", {"divide"}, set()),
    ("fold", lambda x: x + gc.constant(2.0) * gc.constant(3.0), "fold", {"multiply"}, set()),
    ("cse", lambda x: (x + gc.exp(x)) * (gc.exp(x) + x), "cse", set(), set()),
    ("dce", lambda x: gc.group(x * 2.0, gc.assign(gc.Variable(np.zeros(10, np.float32)), x)), "dce",
     {"multiply"}, set()),
]


def _values(outputs, x, feed):
    return [v for v in evaluate(outputs, {x: feed}) if v is not None]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rewrite_golden_text(case):
    """The IR after each rewrite, against tests/passes/golden/ (GRAPHC_UPDATE_GOLDEN=1 rewrites them)."""
    name, build, pass_name, *_ = case
    out, _ = run_pipeline(Module((build(_x()),)), [pass_name])
    text = out.as_text()
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("GRAPHC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule_applies_and_preserves_values(case):
    name, build, pass_name, gone, appear = case
    x = _x()
    module = Module((build(x),))
    out, records = run_pipeline(module, [pass_name])
    ops_after = {n.op for n in out.nodes}
    assert records[-1].changes > 0, f"{pass_name} did not fire on {name}:\n{module.as_text()}"
    assert not (gone & ops_after), out.as_text()
    assert appear <= ops_after, out.as_text()
    feed = SPECIAL if pass_name not in ("stabilize",) else np.linspace(-3, 3, 10).astype(np.float32)
    for want, got in zip(_values(module.outputs, x, feed), _values(out.outputs, x, feed)):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6, equal_nan=True)


def test_stabilize_makes_overflowing_forms_finite():
    x = _x()
    big = np.array([1e4, -1e4, 0, 1, 2, 3, 4, 5, 6, 88.0], np.float32)
    out, _ = run_pipeline(Module((gc.log(gc.sum(gc.exp(x))), gc.log(gc.nn.softmax(x)))), ["stabilize"])
    lse, logsm = evaluate(out.outputs, {x: big})
    ref_lse = np.logaddexp.reduce(big.astype(np.float64))
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-6)
    np.testing.assert_allclose(logsm, big - ref_lse, rtol=1e-6, atol=1e-3)
    assert np.isfinite(logsm).all()


def test_no_rule_loops_on_its_own_output():
    x = _x()
    module = Module((gc.logsumexp(x), gc.nn.log_softmax(x)))
    out, records = run_pipeline(module, ["stabilize", "simplify", "stabilize"])
    assert records[-1].changes == 0
    assert len(out.nodes) <= len(module.nodes)


@pytest.mark.parametrize("level", sorted(PIPELINES))
def test_pipelines_preserve_results_on_an_mlp(level):
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float64, (None, 4), name="x")
    w1 = gc.Variable(rng.standard_normal((4, 8)), name="w1")
    w2 = gc.Variable(rng.standard_normal((8, 3)), name="w2")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    logits = gc.tanh(x @ w1 * 1.0 + 0.0) @ w2
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    outputs = (loss, gc.log(gc.nn.softmax(logits)), gc.negative(-logits))
    feed = {x: rng.standard_normal((5, 4)), labels: np.array([0, 1, 2, 1, 0], np.int32)}
    out, records = run_pipeline(Module(outputs), PIPELINES[level])
    for want, got in zip(evaluate(outputs, feed), evaluate(out.outputs, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert [r.name for r in records] == ["input"] + PIPELINES[level]


def test_instrumentation_prints_and_dumps(tmp_path):
    x = _x()
    printed = []
    inst = Instrumentation(print_after={"simplify"}, dump_dir=str(tmp_path), printer=printed.append)
    run_pipeline(Module((gc.negative(-x) * 1.0,)), ["stabilize", "simplify"], inst)
    assert len(printed) == 1 and printed[0].startswith("# after simplify")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["000_input.txt", "001_stabilize.txt", "002_simplify.txt"]
    assert (tmp_path / "002_simplify.txt").read_text() == "%x = placeholder() : f32(10)\nreturn %x\n"


def test_every_pass_has_a_description():
    for p in PASSES.values():
        assert p.description and p.name


def test_verifier_names_the_bad_node():
    x = _x()
    good = gc.exp(x)
    bad = object.__new__(type(good))
    for field in type(good).__slots__[:-1]:
        object.__setattr__(bad, field, getattr(good, field))
    object.__setattr__(bad, "shape", (3,))
    Module((good,)).verify(after="test")  # good's type is checked once, then remembered
    for _ in range(2):  # a bad node is never remembered as checked
        with pytest.raises(VerifyError, match="exp"):
            Module((bad,)).verify(after="test")


def test_every_rewrite_rule_has_a_golden_case():
    rules = {r.name for r in simplify.RULES + stabilize.RULES}
    cases = {c[0] for c in CASES if c[2] in ("simplify", "stabilize")}
    assert rules - cases == set(), "rules without a golden case in CASES"
    assert cases - rules == set(), "cases naming no rule"


def test_rules_that_undo_each_other_stop_with_an_error_naming_them():
    swap = [Rule("swap-add", P("add", V("a"), V("b")), lambda e: e["b"] + e["a"]),
            Rule("never", P("negative", V("a")), lambda e: None)]
    x = _x()
    with pytest.raises(GraphcError, match=r"did not reach a fixed point in 8 walks .*: swap-add, swap-add"):
        run_rules(Module((x + gc.exp(x),)), swap)


def test_two_rules_that_undo_each_other_stop_with_an_error_naming_both():
    """x - y -> x + (-y) and x + (-y) -> x - y: each undoes the other; the cap names them."""
    rules = [Rule("sub-to-add", P("subtract", V("a"), V("b")), lambda e: e["a"] + (-e["b"])),
             Rule("add-neg-to-sub", P("add", V("a"), P("negative", V("b"))), lambda e: e["a"] - e["b"])]
    x = _x()
    with pytest.raises(GraphcError, match=r"did not reach a fixed point .*(sub-to-add, add-neg-to-sub|"
                                          r"add-neg-to-sub, sub-to-add)"):
        run_rules(Module((x - gc.exp(x),)), rules)


def test_rules_are_tried_in_order_among_those_that_fit_the_node():
    """run_rules offers a node only the rules whose pattern's root is its op (or not an op), in order."""
    tried = []

    def note(name, result=None):
        return lambda e: tried.append((name, e["_"].op)) or (result(e) if result else None)

    rules = [Rule("any", V("n"), note("any")),
             Rule("exp-declines", P("exp", V("a")), note("exp-declines")),
             Rule("log", P("log", V("a")), note("log")),
             Rule("exp-to-tanh", P("exp", V("a")), note("exp-to-tanh", lambda e: gc.tanh(e["a"])))]
    x = _x()
    out, changes = run_rules(Module((gc.exp(x),)), rules)
    assert changes == 1 and out.outputs[0].op == "tanh"
    assert ("exp-declines", "exp") in tried and ("exp-to-tanh", "exp") in tried
    assert tried.index(("exp-declines", "exp")) < tried.index(("exp-to-tanh", "exp"))
    assert ("any", "placeholder") in tried and ("any", "exp") in tried
    assert not any(name == "log" for name, _ in tried)



def test_the_pipeline_table_in_docs_is_pipelines():
    """docs/passes.md lists each opt level's passes; the list must be `PIPELINES`, not a copy that drifts."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "passes.md").read_text()
    rows = dict(re.findall(r"^\| (\d)(?: \(default\))? \| ([a-z, ]+) \|$", text, flags=re.M))
    assert {int(k): v.split(", ") for k, v in rows.items()} == PIPELINES
    first_late = 1 + len(PIPELINES[2])  # dump files: 000_input, the graph passes, then the late passes
    last_late = first_late + len(LLVM.late_pipeline) - 1
    late = f"`{first_late:03d}_fusion.txt`\n... `{last_late:03d}_memory.txt` at opt level 2"
    assert late in text
