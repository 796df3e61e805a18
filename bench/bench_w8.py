"""W8: a 1000-step tanh RNN train step written with a scan: graphc vs JAX lax.scan (jit) vs PyTorch eager.

h_t = tanh(x_t Wx + h_{t-1} Wh + b), hidden 128, batch 32, inputs 16, float32; the loss is
the mean square of every h_t, and the step applies SGD to Wx, Wh and b. graphc runs under
the checkpoint policies none, sqrt and revolve(slots=4). Reported: step time (medians,
systems interleaved round by round; PyTorch on one thread), peak memory (graphc: the
planned arena, the saved residual bytes and what the loop stores for the reverse loop;
JAX: the compiled executable's memory_analysis temp bytes; PyTorch eager: not measured), graphc's compile
time for 10 and 1000 steps (disk cache off, after a first compile that initializes LLVM),
and the load average before and after.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from _timing import describe, fmt_time, graphc_status, measure, optional, parse_args, table

STEPS, HIDDEN, BATCH, NIN, LR = 1000, 128, 32, 16, 0.01


def data(steps: int = STEPS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"xs": rng.standard_normal((steps, BATCH, NIN)).astype(np.float32),
            "Wx": (rng.standard_normal((NIN, HIDDEN)) * 0.2).astype(np.float32),
            "Wh": (rng.standard_normal((HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32),
            "b": np.zeros(HIDDEN, np.float32)}


def graphc_step(gc, d: dict, options=None):
    """(compile seconds, program, step function) of the graphc train step."""
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float32, d["xs"].shape, name="xs")
        wx, wh, b = (gc.Variable(d[k].copy(), name=k) for k in ("Wx", "Wh", "b"))

        def cell(h, x):
            h = gc.tanh(x @ wx + h @ wh + b)
            return h, h

        _, hs = gc.scan(cell, gc.zeros((BATCH, HIDDEN), gc.float32), xs)
        loss = gc.mean(hs * hs)
        train = gc.train.SGD(LR).minimize(loss)
    sess = gc.Session(g, options=options)
    feed = {xs: d["xs"]}
    t0 = time.perf_counter()
    program = sess.compile([loss, train], feed)
    seconds = time.perf_counter() - t0
    return seconds, program, lambda: sess.run([loss, train], feed)[0]


def jax_step(jax, d: dict):
    """(step function, temp bytes of the compiled executable)."""
    jnp = jax.numpy

    def loss_fn(params, xs):
        wx, wh, b = params

        def cell(h, x):
            h = jnp.tanh(x @ wx + h @ wh + b)
            return h, h

        _, hs = jax.lax.scan(cell, jnp.zeros((BATCH, HIDDEN), jnp.float32), xs)
        return jnp.mean(hs * hs)

    @jax.jit
    def step(params, xs):
        loss, grads = jax.value_and_grad(loss_fn)(params, xs)
        return loss, tuple(p - LR * g for p, g in zip(params, grads))

    params = tuple(jnp.asarray(d[k]) for k in ("Wx", "Wh", "b"))
    xs = jnp.asarray(d["xs"])
    compiled = step.lower(params, xs).compile()
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    state = {"p": params}

    def run():
        loss, state["p"] = compiled(state["p"], xs)
        return loss.block_until_ready()
    return run, temp


def torch_step(torch, d: dict):
    params = [torch.tensor(d[k], requires_grad=True) for k in ("Wx", "Wh", "b")]
    xs = torch.tensor(d["xs"])

    def run():
        wx, wh, b = params
        h = torch.zeros(BATCH, HIDDEN)
        total = 0.0
        for t in range(xs.shape[0]):
            h = torch.tanh(xs[t] @ wx + h @ wh + b)
            total = total + (h * h).sum()
        loss = total / (xs.shape[0] * BATCH * HIDDEN)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
        return loss.item()
    return run


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    os.environ.setdefault("GRAPHC_CACHE", "0")  # compile times without the disk cache
    gc, backend = graphc_status()
    print(describe(backend))
    d = data()
    systems: dict[str, object] = {}
    rows_mem = []
    loop_before = 0
    compile_rows = []
    graphc_step(gc, data(10))  # the first compile of a process also initializes LLVM: not counted
    for steps in (10, STEPS):
        seconds, program, _ = graphc_step(gc, data(steps))
        compile_rows.append({"steps": str(steps), "graphc compile": f"{seconds:.2f} s",
                             "program steps": str(len(program.plan.steps)),
                             "LLVM IR chars": f"{len(program.as_text('llvm')):,}"})
    for label, opts in (("graphc", None), ("graphc sqrt", gc.CompileOptions(checkpoint="sqrt")),
                        ("graphc revolve(4)", gc.CompileOptions(checkpoint="revolve", slots=4))):
        _, program, run = graphc_step(gc, d, opts)
        systems[label] = run
        rep = program.optimized.checkpoint_report(opts.checkpoint if opts else "none")
        loop_before = loop_before or sum(r.stored_before for r in rep.loops)  # none's: every iteration's residuals
        what = "; ".join(x for x in ["planned arena", *map(str, rep.loops), rep.note] if x)
        rows_mem.append({"system": label, "peak bytes": f"{program.plan.arena_bytes:,}",
                         "saved residual bytes": f"{rep.saved_bytes:,}",
                         "loop stores": f"{sum(r.stored_after for r in rep.loops):,}" if rep.loops else "",
                         "what": what})
    rows_mem[0]["loop stores"] = f"{loop_before:,} (residuals)"
    jax = optional("jax")
    if jax is not None:
        run, temp = jax_step(jax, d)
        systems["JAX lax.scan jit"] = run
        rows_mem.append({"system": "JAX lax.scan jit", "peak bytes": f"{temp:,}" if temp is not None else "n/a",
                         "saved residual bytes": "", "loop stores": "",
                         "what": "compiled memory_analysis temp bytes"})
    torch = optional("torch")
    if torch is not None:
        torch.set_num_threads(1)  # eager small ops: thread hand-offs cost more than they give here
        systems["PyTorch eager"] = torch_step(torch, d)
        rows_mem.append({"system": "PyTorch eager", "peak bytes": "n/a", "saved residual bytes": "",
                         "loop stores": "", "what": "not measured"})
    losses = {k: float(fn()) for k, fn in systems.items()}
    rounds: dict[str, list[float]] = {k: [] for k in systems}
    for _ in range(args.repeat):  # round-robin: load changes hit every system alike
        for k, fn in systems.items():
            rounds[k].append(measure(fn, 1, args.target, warmup=1).median)
    base = statistics.median(rounds["JAX lax.scan jit"]) if "JAX lax.scan jit" in rounds else None
    rows = [{"system": k, "step (median)": fmt_time(statistics.median(v)),
             "spread": f"{(max(v) - min(v)) / statistics.median(v):.0%}",
             "vs JAX": f"{statistics.median(v) / base:.2f}x" if base else "-", "first loss": f"{losses[k]:.6f}"}
            for k, v in rounds.items()]
    print(table(f"W8 train step, {STEPS}-step tanh RNN, hidden {HIDDEN}, batch {BATCH}", rows, list(rows[0])))
    print(table("W8 peak memory", rows_mem, list(rows_mem[0])))
    print(table("W8 graphc compile time (disk cache off)", compile_rows, list(compile_rows[0])))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
