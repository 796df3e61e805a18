"""Symbolic dims: one compiled program per symbolic signature, matching the specialized programs."""

import numpy as np
import pytest
from demo_model import demo_step

import graphc as gc

SPECIALIZED = gc.CompileOptions(specialize=True)
SYMBOLIC = gc.CompileOptions(specialize=False)  # the template from the first run, whatever the disk cache holds


def _mlp():
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 6), name="x")
    y = gc.placeholder(gc.int32, (None,), name="y")
    w1 = gc.Variable(rng.standard_normal((6, 5)).astype(np.float32), name="w1")
    b1 = gc.Variable(np.zeros(5, np.float32), name="b1")
    w2 = gc.Variable(rng.standard_normal((5, 3)).astype(np.float32), name="w2")
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, y)
    return x, y, [loss, *gc.gradients(loss, [w1, b1, w2])]


def _feeds(x, y, n, rng):
    return {x: rng.standard_normal((n, 6)).astype(np.float32), y: rng.integers(0, 3, n).astype(np.int32)}


SIZES = (1, 7, 32, 500)


def test_one_compile_for_many_batch_sizes():
    """The loss and gradients of an MLP at batch 1 (first), 7, 32 and 500: one program, through
    Session.run and through gc.function, each matching the reference backend at every size
    (`specialize=False`: the template from the first run)."""
    x, y, fetches = _mlp()
    rng = np.random.default_rng(1)
    before = gc.compile_count()
    f = gc.function([x, y], fetches, options=SYMBOLIC)
    with gc.Session(options=SYMBOLIC) as sess, gc.Session(backend="reference") as ref:
        for n in SIZES:
            feeds = _feeds(x, y, n, rng)
            want = ref.run(fetches, feeds)
            for got in (sess.run(fetches, feeds), f(feeds[x], feeds[y])):
                for g, w in zip(got, want):
                    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5, err_msg=f"batch {n}")
        assert sess.stats() == {"compiles": 1, "symbolic": 1, "specialized": 0, "first_sizes": 0, "not_symbolic": []}
    assert f.stats() == {"compiles": 1, "symbolic": 1, "specialized": 0, "first_sizes": 0, "not_symbolic": []}
    assert gc.compile_count() - before == 2


def _train_steps(build, feeds_at):
    """Run `build()` -> (placeholders, fetches ending with a train op, variables) at each batch
    size of SIZES in a symbolic and a specialized session: values before the update (the
    gradients) and the updated variables agree at each size; the symbolic session compiled
    one program (`specialize=False`: the template from the first run)."""
    placeholders, fetches, variables = build()
    rng = np.random.default_rng(7)
    before = gc.compile_count()
    with gc.Session(options=SYMBOLIC) as sess, gc.Session(options=SPECIALIZED) as spec:
        for n in SIZES:
            feeds = feeds_at(placeholders, n, rng)
            got, want = sess.run(fetches, feeds), spec.run(fetches, feeds)
            assert got[-1] is None and want[-1] is None  # the train op
            for g, w in zip(got[:-1], want[:-1]):  # values computed before the update (gradients)
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, err_msg=f"batch {n}")
            for v in variables:
                np.testing.assert_allclose(sess.variable_value(v), spec.variable_value(v), rtol=2e-5, atol=1e-6,
                                           err_msg=f"{v.name} after batch {n}")
        assert sess.stats() == {"compiles": 1, "symbolic": 1, "specialized": 0, "first_sizes": 0, "not_symbolic": []}
        assert spec.stats()["specialized"] == len(SIZES)
    assert gc.compile_count() - before == 1 + len(SIZES)


def test_mlp_train_step_one_program_for_every_batch_size():
    def build():
        x, y, (loss, *grads) = _mlp()
        train = gc.train.SGD(0.1).minimize(loss)
        return (x, y), [loss, *grads, train], list(gc.get_default_graph().variables)

    _train_steps(build, lambda ph, n, rng: _feeds(*ph, n, rng))


def test_demo_model_one_program_for_every_batch_size():
    """examples/mlp_digits.py's model: dense ReLU, dense, softmax cross-entropy, argmax accuracy, Adam."""
    def build():
        placeholders, fetches = demo_step(gc.train.Adam(3e-3), hidden=32)
        return placeholders, fetches, list(gc.get_default_graph().variables)  # Adam's slots too

    def feeds(ph, n, rng):
        return {ph[0]: rng.random((n, 64)).astype(np.float32), ph[1]: rng.integers(0, 10, n).astype(np.int32)}

    _train_steps(build, feeds)


def _table():
    """(name, placeholders with None dims, fetches built from them)."""
    cases = []
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    w = gc.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="w")
    cases.append(("batch reductions", [x], [x.sum(axis=0), gc.mean(x), gc.max(x, axis=0), gc.mean(gc.exp(x), axis=1)]))
    y = gc.sum(gc.tanh(x @ w))
    cases.append(("matmul with symbolic M", [x], [x @ w, *gc.gradients(y, [x, w])]))
    b = gc.placeholder(gc.float32, (4,), name="b")
    z = gc.placeholder(gc.float32, (None, 1), name="z")
    y = gc.sum((x + b) * z)
    cases.append(("broadcasting", [x, b, z], [(x + b) * z, *gc.gradients(y, [x, b, z])]))
    y = gc.sum(x[:, 1:3] * 3.0) + gc.sum(x[:, ::2]) + gc.sum(x[-1]) + gc.sum(x[0] * 2.0)
    cases.append(("slicing", [x], [x[:, 1:3], x[:, ::2], x[-1], *gc.gradients(y, [x])]))  # x[-1] is x[0] at N = 1
    r = gc.reshape(x, (-1, 2))
    cases.append(("reshape -1", [x], [r, gc.reshape(x, (-1,)), *gc.gradients(gc.sum(r * r), [x])]))
    m = gc.placeholder(gc.float64, (None, None), name="m")
    cases.append(("two symbols", [m], [m.sum(axis=0), m.T @ m, gc.mean(m, axis=1)]))
    return cases


@pytest.mark.parametrize("case", range(6))
def test_symbolic_matches_specialized(case):
    name, placeholders, fetches = _table()[case]
    rng = np.random.default_rng(case)
    with gc.Session(options=SYMBOLIC) as sess, gc.Session(options=SPECIALIZED) as spec:
        for n in (1, 3, 8):
            feeds = {}
            for p in placeholders:
                shape = tuple(n + k if d is None else d for k, d in enumerate(p.shape))
                feeds[p] = rng.standard_normal(shape).astype(p.dtype)
            for got, want in zip(sess.run(fetches, feeds), spec.run(fetches, feeds)):
                assert got.shape == want.shape, name
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        stats = sess.stats()
        assert (stats["compiles"], stats["symbolic"]) == (1, 1), (name, stats)


def test_dims_that_break_an_equality_are_refused():
    x, y, fetches = _mlp()
    rng = np.random.default_rng(2)
    with gc.Session(options=SYMBOLIC) as sess:
        sess.run(fetches, _feeds(x, y, 4, rng))
        feeds = _feeds(x, y, 4, rng)
        feeds[y] = feeds[y][:3]
        with pytest.raises(gc.ShapeError):
            sess.run(fetches, feeds)
        assert sess.stats()["symbolic"] == 1


def test_zero_dims_and_specialize_option():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.sum(x * 2.0, axis=0)
    with gc.Session(options=SYMBOLIC) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: np.ones((5, 3), np.float32)}), np.full(3, 10.0))
        np.testing.assert_array_equal(sess.run(y, {x: np.ones((0, 3), np.float32)}), np.zeros(3))  # specialized
        assert sess.stats()["symbolic"] == 1 and sess.stats()["specialized"] == 1
    with pytest.raises(gc.GraphcError, match="specialize"):
        gc.CompileOptions(specialize=1)


@pytest.mark.parametrize("build, reason", [
    (lambda x: x[:5] * 2.0, "not an affine function"),  # min(N, 5) rows
    (lambda x: x[::2] * 2.0, "not an affine function"),  # ceil(N / 2) rows
    (lambda x: x[1] * 2.0, "does not bind"),  # needs N >= 2
    (lambda x: gc.gradients(gc.sum(x[1:] * 3.0), [x])[0], "structure depends"),  # x[1:] is empty at N = 1
    (lambda x: gc.reshape(x, (-1, 3)), "does not bind"),  # needs 4 N divisible by 3
    (lambda x: gc.linalg.inv(x.T @ x + 9 * np.eye(4)), "LAPACK"),
    (lambda x: gc.print(x, message="x") * 2.0, "host callbacks"),
])
def test_programs_that_need_static_shapes_are_specialized(build, reason):
    x = gc.placeholder(gc.float64, (None, 4), name="x")
    y = build(x)
    with gc.Session() as sess, gc.Session(backend="reference") as ref:
        for n in (3, 6):
            feed = {x: np.arange(n * 4.0).reshape(n, 4) / 7}
            np.testing.assert_allclose(sess.run(y, feed), ref.run(y, feed), rtol=1e-12)
        stats = sess.stats()
        assert stats["specialized"] == 2 and stats["symbolic"] == 0, stats
        assert len(stats["not_symbolic"]) == 1 and reason in stats["not_symbolic"][0], stats


def test_more_symbols_than_a_template_takes_are_specialized():
    xs = [gc.placeholder(gc.float32, (None,), name=f"x{i}") for i in range(5)]
    y = gc.add_n([gc.sum(x) for x in xs]) if hasattr(gc, "add_n") else sum(gc.sum(x) for x in xs)
    with gc.Session() as sess:
        assert sess.run(y, {x: np.ones(i + 1, np.float32) for i, x in enumerate(xs)}) == 15
        assert "at most 4" in sess.stats()["not_symbolic"][0]


def test_exported_library_takes_any_batch_size_and_checks_dims(tmp_path):
    x, y, fetches = _mlp()
    f = gc.function([x, y], fetches)
    f.export(tmp_path, "mlp")  # the inputs have None dims: the symbolic program, for every batch size
    assert "(s0, 6), (s0,)" in (tmp_path / "mlp.h").read_text()
    lib = gc.load_exported(tmp_path, "mlp")
    assert lib.manifest["signatures"][0]["inputs"] == [["s0", 6], ["s0"]]
    rng = np.random.default_rng(3)
    for n in (1, 5, 33):
        feeds = _feeds(x, y, n, rng)
        for got, want in zip(lib(feeds[x], feeds[y]), f(feeds[x], feeds[y])):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(gc.FeedError, match="match no exported signature"):
        lib(np.ones((4, 6), np.float32), np.zeros(3, np.int32))

    def call(xs, ys):  # the C entry itself, with the dims given
        state = [lib.state[s.name] for s in lib.state_specs]
        outs = [np.zeros(s, np.float32) for s in ((), (6, 5), (5,), (5, 3))]
        xa, ya = np.zeros(max(xs[0], 1) * xs[1], np.float32), np.zeros(max(ys[0], 1), np.int32)
        args = [xa.ctypes.data, *xs, ya.ctypes.data, *ys]
        for a in state + outs:
            args += [a.ctypes.data, *a.shape]
        return lib.library.mlp(*args, None, 0)

    assert call((4, 6), (4,)) == 0
    for xs, ys in (((4, 6), (3,)), ((4, 7), (4,)), ((0, 6), (0,)), ((2**20 + 1, 6), (2**20 + 1,))):
        assert call(xs, ys) == 2, (xs, ys)  # dims that break an equality, a static dim, the symbols' range


def test_template_arena_shares_bytes_only_where_buffers_are_apart_at_every_size():
    """Affine first fit: a 1 MB buffer fits in the gap between two batch-sized buffers at a large
    batch only, so it must not go there; buffers live at different steps share bytes."""
    from graphc.backend.llvm.probes import LIMIT
    from graphc.backend.llvm.template import Affine, _reuse

    sizes = [Affine((2048,), 0), Affine((2048,), 0), Affine((0,), 1 << 20), Affine((2048,), 0), Affine((64,), 64)]
    lives = [(0, 1), (0, 5), (3, 5), (6, 8), (6, 6)]  # buffer 2 would fit where buffer 0 was
    offsets, top = _reuse(sizes, lives, (1048583,))
    assert top.at((1048583,)) < sum(s.at((1048583,)) for s in sizes)  # buffer 3 takes buffer 0's bytes
    assert offsets[2].at((1,)) >= 4096  # after buffer 1, not where buffer 0 was
    for n in (1, 2, 37, 500, 4096, LIMIT):
        spans = [(o.at((n,)), o.at((n,)) + s.at((n,))) for o, s in zip(offsets, sizes)]
        assert all(hi <= top.at((n,)) for _, hi in spans)
        for a in range(len(sizes)):
            for b in range(a + 1, len(sizes)):
                if lives[a][0] <= lives[b][1] and lives[b][0] <= lives[a][1]:
                    assert spans[a][1] <= spans[b][0] or spans[b][1] <= spans[a][0], (n, a, b, spans)


def test_a_template_pairs_independent_products():
    """Two products run at once on two threads: pairs are found before the arena is placed and
    liveness keeps the buffers of a pair apart at every size, so a template pairs them as the
    program specialized to batch 4096 does; at batch 3 the code runs them one after the other
    (too little work for a thread each). Values as the specialized program's at both sizes."""
    x = gc.placeholder(gc.float32, (None, 256), name="x")
    w1, w2 = (gc.Variable(np.full((256, 256), 0.01 * (i + 1), np.float32), name=f"w{i}") for i in range(2))
    fetches = [gc.relu(x @ w1), gc.tanh(x @ w2)]
    feed = {x: np.ones((4096, 256), np.float32)}
    with gc.Session(options=SYMBOLIC) as sess, gc.Session(options=SPECIALIZED) as spec:
        assert "pair_" in sess.compile(fetches, feed).ir_text
        assert "pair_" in spec.compile(fetches, feed).ir_text
        for n in (3, 4096):
            feeds = {x: np.random.default_rng(n).standard_normal((n, 256)).astype(np.float32)}
            for got, want in zip(sess.run(fetches, feeds), spec.run(fetches, feeds)):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert sess.stats()["symbolic"] == 1


def test_a_scan_over_a_symbolic_batch_is_one_program():
    """A loop body's arena in a template is placed without sharing, every offset a sum of sizes
    (`memory.place_in_order`): an RNN over 5 steps of a batch of any size, gradients included."""
    x = gc.placeholder(gc.float32, (5, None, 3), name="x")
    w = gc.Variable(np.linspace(-0.5, 0.5, 9, dtype=np.float32).reshape(3, 3), name="w")
    _, hs = gc.scan(lambda c, xt: (gc.tanh(c @ w + xt),) * 2, x[0] * 0.0, x)
    loss = gc.sum(hs * hs)
    fetches = [loss, *gc.gradients(loss, [w])]
    with gc.Session(options=SYMBOLIC) as sess, gc.Session(backend="reference") as ref:
        for n in SIZES:
            feed = {x: np.random.default_rng(n).standard_normal((5, n, 3)).astype(np.float32)}
            for got, want in zip(sess.run(fetches, feed), ref.run(fetches, feed)):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"batch {n}")
        assert sess.stats()["compiles"] == 1 and sess.stats()["symbolic"] == 1, sess.stats()


def _template_of_mlp(monkeypatch, change_guess=None):
    """The MLP's symbolic program built with `fit_ir`'s guess from the large probes replaced by
    `change_guess(text)` (None: as it is); returns (program, the IR texts the compiles were given,
    (x, y, fetches))."""
    from graphc.backend.llvm import jit, symbolic

    x, y, fetches = _mlp()
    compiled, fit_ir, compile_ir = [], symbolic.fit_ir, jit.compile_ir

    def fit(texts, points, scans=None, guess=False):
        text = fit_ir(texts, points, scans, guess=guess)
        return change_guess(text) if guess and change_guess is not None else text

    def record(ir_text, *args):
        compiled.append(ir_text)
        return compile_ir(ir_text, *args)

    monkeypatch.setenv("GRAPHC_CACHE", "0")
    monkeypatch.setattr(symbolic, "fit_ir", fit)
    for module in (jit, symbolic, "graphc.backend.llvm.program"):
        monkeypatch.setattr((module if isinstance(module, str) else module.__name__) + ".compile_ir", record)
    program = symbolic.SymbolicProgram(fetches, [], [(x, 0)], lambda v: {x: (v[0], 6), y: (v[0],)})
    return program, compiled, (x, y, fetches)


def test_the_template_compiles_while_the_small_probes_are_built(monkeypatch):
    """The template fitted on the large probes is the template of all probes (the MLP's loss has
    mean's 1/N, a float literal that any two probes fit as a line: the guess takes the
    reciprocal): one compile, started before the small probes are planned."""
    from graphc.backend.llvm import symbolic
    from graphc.backend.llvm.probes import small_probes

    events, plan_at = [], symbolic._plan_at

    def planned(fetches, assigns, shapes, *args):
        events.append(max(s[0] for s in shapes.values()))
        return plan_at(fetches, assigns, shapes, *args)

    monkeypatch.setattr(symbolic, "_plan_at", planned)
    program, compiled, _ = _template_of_mlp(monkeypatch, lambda text: events.append("compile") or text)
    assert compiled == [program.ir_text] and program.compiled.ir_text == program.ir_text
    assert events[-4:] == ["compile", *(p[0] for p in small_probes(1))]


def test_a_template_the_small_probes_change_is_compiled_again(monkeypatch):
    """When the large probes' guess is not the template of all probes, the program compiles the
    template of all probes (the early compile is dropped)."""
    program, compiled, _ = _template_of_mlp(monkeypatch, lambda text: text + "\n; a wrong guess\n")
    assert len(compiled) == 2 and compiled[0].endswith("; a wrong guess\n")
    assert compiled[1] == program.ir_text == program.compiled.ir_text and "a wrong guess" not in program.ir_text


def test_the_guess_fits_a_reciprocal_that_the_large_probes_alone_fit_as_a_line():
    """`fit_ir` on the large probes: without the guess, 1/N fits a real line there (which the small
    probes refute); with it, 1/N, as every probe gives."""
    from graphc.backend.llvm.probes import probes, small_probes
    from graphc.backend.llvm.template import _double_hex, fit_ir

    def text(n):
        return f"\ndefine double @f() {{\nentry:\n  %a = fadd double 1.0, {_double_hex(1.0 / n)}\n  ret double %a\n}}\n"

    large, points = probes(1), probes(1) + small_probes(1)
    every = fit_ir([text(p[0]) for p in points], points)
    assert "fdiv" in every
    assert fit_ir([text(p[0]) for p in large], large, guess=True) == every
    assert fit_ir([text(p[0]) for p in large], large) != every


def test_report_of_a_symbolic_program_gives_figures_at_the_fed_sizes():
    """`Session.compile(...).report()` at batch 32: the arena is the formula's value there and
    the checkpoint figures (saved bytes, FLOPs) are the specialized program's, not the nominal size's."""
    placeholders, fetches = demo_step(gc.train.Adam(3e-3), hidden=32)
    rng = np.random.default_rng(0)
    reports = {}
    for specialize in (False, True):
        with gc.Session(options=gc.CompileOptions(specialize=specialize)) as sess:
            feed = {placeholders[0]: rng.random((32, 64)).astype(np.float32),
                    placeholders[1]: rng.integers(0, 10, 32).astype(np.int32)}
            program = sess.compile(fetches, feed)
            reports[specialize] = program.report()
            if not specialize:
                arena = program.arena_formula.bytes_at((32,))
                nominal = program.at((32,)).report()  # no feed shapes: the template's own figures, marked
    symbolic, specialized = reports[False], reports[True]
    assert symbolic.startswith("symbolic program (s0 = dim 0 of ") and "at s = (32,)" in symbolic
    assert f"planned peak (arena): {arena} bytes" in symbolic
    assert "the checkpoint figures are at s = (" in nominal and f"planned peak (arena): {arena} bytes" in nominal

    def figures(text):
        heads = ("saved residuals", "recomputed nodes", "forward FLOPs")
        return [ln for ln in text.splitlines() if ln.startswith(heads)]
    assert figures(symbolic) == figures(specialized) and len(figures(symbolic)) == 3


def test_fuzz_seed_6101661_float64_gradient_of_a_mean_over_a_symbolic_dim_keeps_float64_accuracy():
    """The gradient seed c over mean's N, the float64 literal c / N, was fitted as 1 / (a N + b)
    with the slope a taken at the large probes (N near 3e6), whose rounding left b = -1.08e-6:
    the template's gradient was 1.6e-7 relative off at N = 12 (graph-fuzz seed 6101661, an SGD
    step's gradient 4.5e-8 off). Real fits are least squares over every probe now."""
    c = 1.7575018512345678
    x = gc.placeholder(gc.float64, (None, 3))
    grad = gc.gradients(gc.mean(x * x), [x], grad_ys=np.float64(c))[0]
    with gc.Session(options=SYMBOLIC) as sess:
        got = sess.run(grad, {x: np.ones((4, 3))})
        assert sess.stats()["symbolic"] == 1
    np.testing.assert_allclose(got, np.full((4, 3), 2 * c / 12), rtol=1e-14)
