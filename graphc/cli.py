"""The `graphc` command: inspect what the compiler does to a graph.

TARGET is ``path/file.py:function`` (the function builds a graph and returns its fetches,
or ``(fetches, feed_shapes)`` with shapes for placeholders that have None dims, keyed by
placeholder or name) or a graph file written by ``gc.save``.
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import GraphcError, UsageError
from .ir.graph import Graph, Tensor
from .ir.traverse import toposort
from .options import CompileOptions
from .passes.manager import Instrumentation, PassRecord
from .passes.module import Module
from .tables import table

EXAMPLES = """examples:
  graphc passes examples/cli/targets.py:mlp --opt-level 2
  graphc show examples/cli/targets.py:mlp --after simplify --format dot
  graphc llvm examples/cli/targets.py:mlp --asm
  graphc memory examples/cli/targets.py:chain
  graphc profile examples/cli/targets.py:chain --runs 20 --trace chain.json
  graphc export examples/cli/targets.py:mlp --name mlp -o build --inputs x,labels --outputs 0 --grad-wrt w1,b1,w2
  graphc passes model.json --shape x=32,784 --print-after-all --dump-dir /tmp/stages
"""


def load_target(spec: str, extra_shapes: dict[str, tuple[int, ...]] | None = None,
                ) -> tuple[list[Tensor], dict[Tensor, tuple[int, ...]]]:
    """The fetches (flattened) and bound feed shapes that TARGET describes (`extra_shapes`,
    by placeholder name, override the target's)."""
    from .ir.serialize import load
    from .runtime.fetches import flatten

    if ":" in spec and not os.path.exists(spec):
        path, func = spec.rsplit(":", 1)
        if not os.path.exists(path):
            raise UsageError(f"no such file: {path}")
        graph = Graph()
        with graph.as_default():
            try:
                namespace = runpy.run_path(path, run_name="graphc_target")
            except Exception as exc:  # the user's file failed: report it in one line
                raise UsageError(f"{path}: {type(exc).__name__}: {exc}") from None
            if func not in namespace or not callable(namespace[func]):
                raise UsageError(f"{path} has no function {func!r}")
            try:
                result = namespace[func]()
            except GraphcError:
                raise
            except Exception as exc:
                raise UsageError(f"{spec}: {type(exc).__name__}: {exc}") from None
    elif os.path.exists(spec):
        result = load(spec).outputs
    else:
        raise UsageError(f"no such target: {spec} (expected path/file.py:function or a saved graph file)")
    shapes: dict[Any, Any] = {}
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        result, shapes = result
    fetches, _ = flatten(result)
    return fetches, _bind_shapes(fetches, {**shapes, **(extra_shapes or {})})


def parse_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """``name=dims`` arguments (``x=32,784``; ``s=`` for a scalar) as {name: shape}."""
    shapes = {}
    for spec in specs or ():
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise UsageError(f"--shape {spec!r}: expected NAME=DIMS such as x=32,784") from None
        if any(d < 0 for d in shapes[name]):
            raise UsageError(f"--shape {spec!r}: dims must not be negative")
    return shapes


def _target(args: argparse.Namespace) -> tuple[list[Tensor], dict[Tensor, tuple[int, ...]]]:
    """The subcommand's target with its ``--shape`` arguments applied."""
    return load_target(args.target, parse_shapes(args.shape))


def _bind_shapes(fetches: list[Tensor], shapes: dict) -> dict[Tensor, tuple[int, ...]]:
    placeholders = [n for n in toposort(fetches) if n.op == "placeholder"]
    by_name = {p.name: p for p in placeholders}
    bound: dict[Tensor, tuple[int, ...]] = {}
    for key, shape in shapes.items():
        ph = by_name.get(key) if isinstance(key, str) else key
        if ph not in placeholders:
            raise UsageError(f"feed shape given for unknown placeholder {key!r}")
        bound[ph] = tuple(int(d) for d in shape)
    for ph in placeholders:
        if ph not in bound:
            if any(d is None for d in ph.shape):
                raise UsageError(f"placeholder {ph.name} has unknown dims {ph.shape}; pass --shape "
                                 f"{ph.name}=DIMS, or return (fetches, {{'{ph.name}': shape}}) from the target "
                                 "function")
            bound[ph] = tuple(ph.shape)
    return bound


def program_outputs(fetches: Sequence[Tensor]) -> list[Tensor]:
    """Fetched tensors plus every assignment they trigger (what a Session run computes)."""
    assigns = [n for n in toposort(fetches) if n.op == "assign"]
    return list(dict.fromkeys(list(fetches) + assigns))


def _options(args: argparse.Namespace) -> CompileOptions:
    return CompileOptions(opt_level=args.opt_level, checkpoint=args.checkpoint, memory_budget=args.budget,
                          slots=args.slots)


def _instrument(args: argparse.Namespace, **extra: Any) -> Instrumentation:
    after: set[str] | str = "all" if args.print_after_all else set(args.print_after or ())
    return Instrumentation(print_after=after, dump_dir=args.dump_dir, **extra)


def _optimize(args: argparse.Namespace, passes: Sequence[str] | None = None, lower: bool = False, **extra: Any):
    from .backend.llvm.backend import LLVM
    from .compiler import optimize

    fetches, shapes = _target(args)
    return optimize(program_outputs(fetches), shapes, _options(args), _instrument(args, **extra), passes,
                    backend=LLVM, lower=lower)


def format_table(records: Sequence[PassRecord]) -> str:
    """One row per pass: time, nodes, kernels, planned peak bytes, rewrites."""
    rows = [("pass", "ms", "nodes", "kernels", "peak bytes", "changes")]
    for r in records:
        rows.append((r.name, f"{r.seconds * 1e3:.2f}", str(r.nodes), str(r.stats.get("kernels", "-")),
                     str(r.stats.get("peak_bytes", "-")), str(r.changes)))
    return table(rows)


def cmd_passes(args: argparse.Namespace) -> None:
    from .backend.llvm.backend import LLVM

    result = _optimize(args, lower=True, measure=LLVM.measure)  # graph passes, then the backend's late passes
    print(format_table(result.records))


def to_dot(module: Module) -> str:
    """The module as a Graphviz digraph (deterministic)."""
    from .ir.printer import node_names, type_str

    order = module.nodes
    names = node_names(order)
    lines = ["digraph graphc {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    for k, n in enumerate(order):
        style = ', style=filled, fillcolor="#e8f0ff"' if n in module.adjoint else ""
        label = f"{names[n]} = {n.op}\\n{type_str(n)}"
        lines.append(f'  n{k} [label="{label}"{style}];')
    index = {n: k for k, n in enumerate(order)}
    for n in order:
        for i in n.inputs:
            lines.append(f"  n{index[i]} -> n{index[n]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def cmd_show(args: argparse.Namespace) -> None:
    from .passes.pipeline import pipeline_for

    names = pipeline_for(args.opt_level)
    if args.after:
        if args.after not in names:
            raise UsageError(f"pass {args.after!r} is not in the opt-level {args.opt_level} pipeline: "
                             + ", ".join(names))
        names = names[: names.index(args.after) + 1]
    if args.stage in ("kernels", "llvm", "asm"):
        text = _program(args).as_text(args.stage)
        print(text, end="")
        return
    module = _optimize(args, passes=[] if args.stage == "bound" else names).module
    if args.format == "text":
        print(module.as_text(), end="")
        return
    dot = to_dot(module)
    if args.format == "dot":
        print(dot, end="")
        return
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError("--format svg needs Graphviz's `dot` on PATH (use --format dot otherwise)")
    sys.stdout.write(subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout)


def _program(args: argparse.Namespace):
    from .backend.llvm.program import LLVMProgram

    fetches, shapes = _target(args)
    outputs = program_outputs(fetches)
    fetched = [o for o in outputs if o.op != "assign"]
    assigns = [o for o in outputs if o.op == "assign"]
    return LLVMProgram(fetched, assigns, shapes, _options(args), _instrument(args))


def cmd_llvm(args: argparse.Namespace) -> None:
    print(_program(args).as_text("asm" if args.asm else "llvm"), end="")


def cmd_memory(args: argparse.Namespace) -> None:
    import math

    from .backend.llvm.backend import LLVM
    from .compiler import bind
    from .passes.checkpoint import place_checkpoints, split

    fetches, shapes = _target(args)
    module, _ = bind(program_outputs(fetches), shapes)
    n = len(split(module).residuals)
    policies: list[tuple[str, dict]] = [("none", {}), ("sqrt", {}), ("mincut", {})]
    policies.append(("revolve", {"slots": args.slots or max(1, math.isqrt(max(n, 1)))}))
    rows = [("policy", "saved bytes", "saved values", "peak bytes", "recomputed", "recomputed FLOPs")]
    for policy, extra in policies:
        try:
            out, rep = place_checkpoints(module, policy, **extra)
        except GraphcError as exc:
            rows.append((policy, "-", "-", "-", "-", f"n/a: {exc}"))
            continue
        label = f"{policy} ({extra['slots']} slots)" if extra else policy
        rows.append((label, str(rep.saved_bytes), str(len(rep.saved)), str(LLVM.measure(out)['peak_bytes']),
                     str(len(rep.recomputed)), str(rep.recomputed_flops)))
    print(table(rows))


def cmd_profile(args: argparse.Namespace) -> None:
    from .profiler.command import profile_program

    fetches, shapes = _target(args)
    options = CompileOptions(opt_level=args.opt_level, checkpoint=args.checkpoint, memory_budget=args.budget,
                             slots=args.slots, threads=args.threads)
    prof = profile_program(program_outputs(fetches), shapes, args.runs, options, args.backend)
    if args.trace:
        prof.export_chrome_trace(args.trace)
    print(prof.table(sort=args.sort, rows=args.rows, peak=None if args.peak else False), end="")
    if args.trace:
        print(f"trace: {args.trace} (open it in Perfetto or chrome://tracing)")


def export_target(target: str, name: str, directory: str, inputs: str | None = None, outputs: str | None = None,
                  grad_wrt: str | None = None, cpu: str = "x86-64-v3",
                  shapes: dict[str, tuple[int, ...]] | None = None) -> Path:
    """`graphc export`: export the fetches of a CLI target (see `load_target`).

    `inputs`/`outputs`/`grad_wrt` are comma-separated node names: the placeholders taken as
    inputs (default: every placeholder the outputs need), the outputs (default: the
    target's fetches; a number picks the target's fetch at that position), and tensors to
    append gradients of the first output for (named ``grad_<name>``). The target's bound
    shapes (with `shapes`, by placeholder name, applied) are the one exported signature.
    """
    from .function import Function

    fetches, shapes = load_target(target, shapes)
    known = {n.name: n for n in toposort(fetches)}

    def lookup(names: str, what: str) -> list:
        found = []
        for n in filter(None, (x.strip() for x in names.split(","))):
            if what == "--outputs" and n.isdigit():
                if int(n) >= len(fetches):
                    raise UsageError(f"--outputs: the target has {len(fetches)} fetches, no fetch {n}")
                found.append(fetches[int(n)])
            elif n in known:
                found.append(known[n])
            else:
                raise UsageError(f"{what}: the target has no node named {n!r}")
        return found

    outs = lookup(outputs, "--outputs") if outputs else [f for f in fetches if f.dtype is not None]
    names = [t.name for t in outs]
    if grad_wrt:
        wrt = lookup(grad_wrt, "--grad-wrt")
        if not outs or outs[0].shape != () or outs[0].dtype.kind != "f":
            raise UsageError("--grad-wrt differentiates the first output, which must be a float scalar")
        from .autodiff import gradients

        for x, g in zip(wrt, gradients(outs[0], wrt)):
            if g is None:
                raise UsageError(f"--grad-wrt: {outs[0].name} does not depend on {x.name} differentiably")
            outs.append(g)
            names.append(f"grad_{x.name}")
    needed = [n for n in toposort(outs) if n.op == "placeholder"]
    placeholders = lookup(inputs, "--inputs") if inputs else needed
    for ph in placeholders:
        if ph.op != "placeholder":
            raise UsageError(f"--inputs: {ph.name} is a {ph.op}, not a placeholder")
    fn = Function(placeholders, outs)
    signature = [shapes.get(ph, ph.shape) for ph in placeholders]
    library = fn.export(directory, name, signatures=[signature], cpu=cpu, output_names=names)
    print(f"wrote {library} ({name}.h, {name}.json, {name}.state.bin): inputs "
          f"{', '.join(ph.name for ph in placeholders) or '-'}; outputs {', '.join(names)}")
    return library


def cmd_export(args: argparse.Namespace) -> None:
    export_target(args.target, args.name, args.out, args.inputs, args.outputs, args.grad_wrt, args.cpu,
                  parse_shapes(args.shape))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("target", help="path/file.py:function or a saved graph file")
        p.add_argument("--shape", action="append", metavar="NAME=DIMS",
                       help="bind a placeholder's shape (x=32,784; s= for a scalar); repeatable")

    def common(p: argparse.ArgumentParser) -> None:
        target(p)
        p.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2))
        p.add_argument("--checkpoint", default="none", choices=("none", "sqrt", "mincut", "revolve"))
        p.add_argument("--budget", type=int, default=None, metavar="BYTES", help="memory budget for checkpointing")
        p.add_argument("--slots", type=int, default=None, help="checkpoint slots for revolve")
        p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
        p.add_argument("--print-after", action="append", metavar="PASS", help="print the IR after PASS")
        p.add_argument("--dump-dir", metavar="DIR", help="write each stage to DIR/NNN_pass.txt")

    p = sub.add_parser("passes", help="one row per pass: time, nodes, kernels, peak bytes, changes",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.set_defaults(fn=cmd_passes)
    p = sub.add_parser("show", help="the IR at any point of the pipeline", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--after", metavar="PASS", help="show the IR after PASS")
    p.add_argument("--stage", choices=("bound", "optimized", "kernels", "llvm", "asm"), default="optimized")
    p.add_argument("--format", choices=("text", "dot", "svg"), default="text")
    p.set_defaults(fn=cmd_show)
    p = sub.add_parser("llvm", help="the LLVM IR (or --asm assembly) of the compiled program", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--asm", action="store_true")
    p.set_defaults(fn=cmd_llvm)
    p = sub.add_parser("memory", help="checkpoint policies side by side", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.set_defaults(fn=cmd_memory)
    p = sub.add_parser("profile", help="run with random feeds and print where the time goes (docs/profiling.md)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--runs", type=int, default=10, help="traced runs after one warm-up run (default 10)")
    p.add_argument("--trace", metavar="FILE.json", help="also write a Chrome trace (Perfetto, chrome://tracing)")
    p.add_argument("--backend", choices=("llvm", "reference"), default="llvm")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--sort", choices=("time", "calls", "flops", "bytes", "step"), default="time")
    p.add_argument("--rows", type=int, default=30, help="at most this many step rows")
    p.add_argument("--no-peak", dest="peak", action="store_false",
                   help="leave out the roofline columns (no peak measurement)")
    p.set_defaults(fn=cmd_profile)
    p = sub.add_parser("export", help="compile to lib<NAME>.so + <NAME>.h + <NAME>.json (see docs/export.md)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    target(p)
    p.add_argument("--name", required=True, help="the C function's name (a C identifier)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="directory to write the files to")
    p.add_argument("--inputs", help="comma-separated placeholders, in argument order (default: all needed)")
    p.add_argument("--outputs", help="comma-separated node names or fetch positions (default: all fetches)")
    p.add_argument("--grad-wrt", metavar="NAMES", help="also output gradients of the first output w.r.t. these")
    p.add_argument("--cpu", default="x86-64-v3", help="target CPU: an LLVM CPU name, or 'host' for this machine")
    p.set_defaults(fn=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `graphc` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (GraphcError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"graphc: error: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
