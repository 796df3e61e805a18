"""W4 under each checkpoint policy: saved bytes, arena peak, recomputed FLOPs and step time.

64 layers of h = tanh(h @ W_i), 256x256 float32, batch 64, gradient w.r.t. every W_i
(the network of bench_w4.py), compiled with gc.CompileOptions(checkpoint=...).
"""

from __future__ import annotations

from _timing import describe, fmt_time, graphc_status, measure, parse_args, table
from bench_w4 import BATCH, WIDTH, check, inputs, reference, weights

POLICIES = [("none", {}), ("sqrt", {}), ("mincut", {}), ("revolve", {"slots": 8}), ("revolve", {"slots": 3})]


def compiled_step(gc, ws, options):
    """(program, step) for the W4 network compiled with `options`."""
    with gc.Graph().as_default():
        xp = gc.placeholder(gc.float32, (BATCH, WIDTH), name="x")
        vs = [gc.Variable(w, name=f"w{i}") for i, w in enumerate(ws)]
        h = xp
        for v in vs:
            h = gc.tanh(h @ v)
        loss = gc.sum(h)
        fetches = [loss, gc.gradients(loss, vs)]
        sess = gc.Session(options=options)
    x = inputs()
    program = sess.compile(fetches, {xp: x})
    return program, lambda: sess.run(fetches, {xp: x})


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    gc, backend = graphc_status()
    print(describe(backend))
    from graphc.passes.checkpoint import report

    ws, x = weights(), inputs()
    ref = reference(ws, x)
    rows, base = [], None
    for policy, extra in POLICIES:
        options = gc.CompileOptions(checkpoint=policy, **extra)
        program, step = compiled_step(gc, ws, options)
        loss, grads = step()
        check(policy, float(loss), grads, ref)
        rep = report(program.optimized.module, policy)
        timing = measure(step, args.repeat, args.target)
        base = base or (rep.saved_bytes, timing.median)
        label = policy + (f" ({extra['slots']} slots)" if extra else "")
        rows.append({"policy": label, "saved bytes": f"{rep.saved_bytes:,}",
                     "saved vs none": f"{rep.saved_bytes / base[0]:.3f}",
                     "arena bytes": f"{program.plan.arena_bytes:,}",
                     "recomputed FLOPs": f"{rep.recomputed_flops:,}",
                     "step (median)": fmt_time(timing.median), "spread": f"{timing.spread():.0%}",
                     "time vs none": f"{timing.median / base[1]:.2f}x"})
    print(table("W4 checkpoint policies", rows, list(rows[0])))


if __name__ == "__main__":
    main()
