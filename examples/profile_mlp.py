"""Profile a training step: where the time goes, per compiled step (docs/profiling.md).

    python examples/profile_mlp.py                    # table + mlp_trace.json
    python examples/profile_mlp.py --png timeline.png # also draw the trace (needs matplotlib)

Open the JSON in https://ui.perfetto.dev or chrome://tracing.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import graphc as gc


def build(batch: int, width: int):
    """A 784-width-width-10 ReLU MLP trained by SGD: (fetches, feeds)."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 784), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    sizes = (784, width, width, 10)
    params = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params += [gc.Variable((rng.standard_normal((m, n)) * np.sqrt(2 / m)).astype(np.float32), name=f"w{i}"),
                   gc.Variable(np.zeros(n, np.float32), name=f"b{i}")]
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = gc.relu(h)
    loss = gc.nn.softmax_cross_entropy(h, labels)
    grads = gc.gradients(loss, params)
    train = gc.group(*[gc.assign_sub(p, 0.01 * g) for p, g in zip(params, grads)])
    feeds = {x: rng.standard_normal((batch, 784)).astype(np.float32),
             labels: rng.integers(0, 10, batch).astype(np.int32)}
    return [loss, train], feeds


def draw(trace_path: str, png_path: str) -> None:
    """Draw a Chrome trace file as a timeline: one row per thread, one bar per event."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = json.load(open(trace_path))["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    spans = [e for e in events if e["ph"] == "X" and e["cat"] != "run"]
    last_run = max((e for e in events if e["ph"] == "X" and e["cat"] == "run"), key=lambda e: e["ts"])
    t0, t1 = last_run["ts"], last_run["ts"] + last_run["dur"]
    spans = [e for e in spans if t0 <= e["ts"] <= t1]
    colors = {"gemm": "tab:blue", "map": "tab:orange", "reduce": "tab:green", "copy": "tab:gray",
              "host call": "tab:purple", "piece": "tab:olive"}
    rows = sorted(names)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.9 * len(rows)))
    for e in spans:
        y = rows.index(e["tid"]) + (0.25 if e["cat"] == "piece" else 0)
        height = 0.35 if e["cat"] == "piece" else 0.8
        ax.broken_barh([((e["ts"] - t0) / 1e3, e["dur"] / 1e3)], (y, height), color=colors.get(e["cat"], "tab:pink"),
                       edgecolor="black", linewidth=0.3)
        if e["dur"] > 0.04 * (t1 - t0) and e["cat"] != "piece":
            ax.text((e["ts"] - t0 + e["dur"] / 2) / 1e3, y + 0.65, e["name"].split()[0], ha="center", fontsize=7)
    ax.set_yticks([i + 0.4 for i in range(len(rows))], [names[t] for t in rows])
    ax.set_xlabel("ms since the start of the run")
    ax.set_title("graphc trace of one training step (steps on the calling thread; pieces of parallel steps)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), ncol=len(colors), fontsize=7, loc="upper right")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small network (smoke test)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--trace", default="mlp_trace.json")
    parser.add_argument("--png", help="draw the last run of the trace into this PNG (needs matplotlib)")
    args = parser.parse_args()
    fetches, feeds = build(*((32, 64) if args.quick else (256, 512)))
    sess = gc.Session()
    sess.run(fetches, feeds)  # compile (and warm up) outside the profile
    with gc.profile() as prof:
        for _ in range(args.runs):
            sess.run(fetches, feeds)
    print(prof.table(rows=10))
    prof.export_chrome_trace(args.trace)
    print(f"wrote {args.trace}: open it in https://ui.perfetto.dev or chrome://tracing")
    if args.png:
        draw(args.trace, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
