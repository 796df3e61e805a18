"""W4 under each checkpoint policy: saved bytes, arena peak, recomputed FLOPs and step time.

64 layers of h = tanh(h @ W_i), 256x256 float32, batch 64, gradient w.r.t. every W_i
(the network of bench_w4.py), compiled with gc.CompileOptions(checkpoint=...).
"""

from __future__ import annotations

import statistics
import time

from _timing import describe, fmt_time, graphc_status, measure, parse_args, table
from bench_w4 import build_network, check, inputs, reference, weights

POLICIES = [("none", {}), ("sqrt", {}), ("mincut", {}), ("revolve", {"slots": 8}), ("revolve", {"slots": 3})]


def compiled_step(gc, ws, options):
    """(program, step) for the W4 network compiled with `options`."""
    graph, xp, fetches = build_network(gc, ws)
    sess = gc.Session(graph, options=options)
    x = inputs()
    program = sess.compile(fetches, {xp: x})
    return program, lambda: sess.run(fetches, {xp: x})


def cpu_per_call(step, calls: int = 5) -> float:
    """CPU seconds of the whole process (every thread) per call: other processes on the
    machine disturb it far less than wall time."""
    start = time.process_time()
    for _ in range(calls):
        step()
    return (time.process_time() - start) / calls


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    gc, backend = graphc_status()
    print(describe(backend))
    from graphc.passes.checkpoint import report

    ws, x = weights(), inputs()
    ref = reference(ws, x)
    built = []
    for policy, extra in POLICIES:
        options = gc.CompileOptions(checkpoint=policy, **extra)
        program, step = compiled_step(gc, ws, options)
        loss, grads = step()
        check(policy, float(loss), grads, ref)
        built.append((policy + (f" ({extra['slots']} slots)" if extra else ""), program, step,
                      report(program.optimized.module, policy)))
    # round-robin: every round times each policy once, so load changes hit all policies alike
    rounds: list[list[float]] = [[] for _ in built]
    cpu: list[list[float]] = [[] for _ in built]
    for _ in range(args.repeat):
        for k, (_, _, step, _) in enumerate(built):
            rounds[k].append(measure(step, 1, args.target, warmup=1).median)
            cpu[k].append(cpu_per_call(step))
    rows = []
    base_bytes, base_time = built[0][3].saved_bytes, statistics.median(rounds[0])
    base_cpu = statistics.median(cpu[0])
    for (label, program, _, rep), times, cpus in zip(built, rounds, cpu):
        med = statistics.median(times)
        rows.append({"policy": label, "saved bytes": f"{rep.saved_bytes:,}",
                     "saved vs none": f"{rep.saved_bytes / base_bytes:.3f}",
                     "arena bytes": f"{program.plan.arena_bytes:,}",
                     "recomputed FLOPs": f"{rep.recomputed_flops:,}",
                     "step (median)": fmt_time(med), "spread": f"{(max(times) - min(times)) / med:.0%}",
                     "time vs none": f"{med / base_time:.2f}x",
                     "cpu per step": fmt_time(statistics.median(cpus)),
                     "cpu vs none": f"{statistics.median(cpus) / base_cpu:.2f}x"})
    print(table("W4 checkpoint policies", rows, list(rows[0])))


if __name__ == "__main__":
    main()
