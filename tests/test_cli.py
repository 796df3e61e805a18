"""The graphc command line, run as a user would (python -m graphc.cli) on the example targets."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.backend import LLVM
from graphc.cli import main
from graphc.passes.pipeline import PIPELINES

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "examples" / "cli" / "targets.py"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_passes_table_has_a_row_per_pass():
    out = run_cli("passes", f"{TARGETS}:mlp")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["pass", "ms", "nodes", "kernels", "peak", "bytes", "changes"]
    names = [line.split()[0] for line in lines[2:]]
    graph = ["input", *PIPELINES[2]]  # the default opt level's graph passes, then the backend's late passes
    assert names == graph + list(LLVM.late_pipeline)
    for line in lines[2:2 + len(graph)]:
        kernels, peak = line.split()[3:5]
        assert int(kernels) > 0 and int(peak) >= 0
    last_graph_row = lines[1 + len(graph)].split()
    rows = {line.split()[0]: line.split() for line in lines[2 + len(graph):]}
    assert rows["fusion"][4] == rows["schedule"][4] == "-"  # no buffers yet
    assert rows["memory"][3:5] == last_graph_row[3:5]  # the plan the last graph pass's row measured
    assert int(rows["steps"][4]) >= int(rows["memory"][4])  # arena sharing only saves bytes


def test_print_after_and_dump_dir(tmp_path, capsys):
    assert main(["passes", f"{TARGETS}:w1", "--print-after", "simplify", "--dump-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "# after simplify" in out and "return" in out
    names = ["input", *PIPELINES[2], *LLVM.late_pipeline]  # dumps are numbered in pipeline order
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{k:03d}_{name}.txt" for k, name in enumerate(names)]
    first_late = len(names) - len(LLVM.late_pipeline)
    assert (tmp_path / f"{first_late:03d}_fusion.txt").read_text().startswith("kernels:")
    assert "steps:" in (tmp_path / f"{len(names) - 1:03d}_memory.txt").read_text()


def test_show_text_dot_and_after(capsys):
    assert main(["show", f"{TARGETS}:w1", "--after", "stabilize"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("%x = placeholder()") and "return" in text
    assert main(["show", f"{TARGETS}:w1", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph graphc {") and "->" in dot


def test_show_kernels_and_llvm(capsys):
    assert main(["show", f"{TARGETS}:w1", "--stage", "kernels"]) == 0
    assert "arena" in capsys.readouterr().out
    assert main(["llvm", f"{TARGETS}:w1"]) == 0
    assert "define" in capsys.readouterr().out
    assert main(["llvm", f"{TARGETS}:w1", "--asm"]) == 0
    asm = capsys.readouterr().out
    assert "graphc_entry:" in asm and "ret" in asm  # the host's assembly, whatever its vector registers


def test_memory_compares_policies(capsys):
    assert main(["memory", f"{TARGETS}:chain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"none", "sqrt", "mincut", "revolve"}
    assert int(rows["sqrt"][1]) * 2 <= int(rows["none"][1])  # saved bytes
    assert int(rows["sqrt"][3]) * 2 <= int(rows["none"][3])  # the compiled arena


def test_saved_graph_file_is_a_target(tmp_path, capsys):
    x = gc.placeholder(gc.float32, (4,), name="x")
    gc.save(gc.sum(gc.exp(x) * 1.0), tmp_path / "g.json")
    assert main(["show", str(tmp_path / "g.json"), "--after", "simplify"]) == 0
    assert "multiply" not in capsys.readouterr().out


def test_saved_graph_file_takes_shapes_on_every_subcommand(tmp_path, capsys):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    path = str(tmp_path / "g.json")
    gc.save(gc.sum(gc.exp(x)), path)
    assert main(["show", path]) == 1
    assert "--shape x=DIMS" in capsys.readouterr().err
    for argv in (["show", path, "--stage", "bound"], ["passes", path], ["llvm", path], ["memory", path],
                 ["profile", path, "--runs", "1", "--no-peak"],
                 ["export", path, "--name", "f", "-o", str(tmp_path / "out")]):
        assert main(argv + ["--shape", "x=5,3"]) == 0, argv
    out = capsys.readouterr().out
    assert "f32(5,3)" in out and "wrote" in out
    assert main(["show", path, "--shape", "y=5,3"]) == 1
    assert "unknown placeholder 'y'" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["show", "nope.py:f"], "no such file"),
    (["show", f"{TARGETS}:missing"], "has no function"),
    (["show", f"{TARGETS}:mlp", "--after", "nosuchpass"], "not in the opt-level"),
    (["passes", "/nonexistent/graph.json"], "no such target"),
])
def test_user_mistakes_give_one_line_and_nonzero_exit(args, message):
    out = run_cli(*args)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_garbled_graph_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = run_cli("show", str(bad))
    assert out.returncode == 1 and "cannot load graph" in out.stderr and "Traceback" not in out.stderr


def test_help_lists_examples():
    out = run_cli("--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "graphc memory" in out.stdout


def test_unbound_none_dims_are_explained(tmp_path):
    target = tmp_path / "t.py"
    target.write_text("import graphc as gc\n\ndef f():\n    x = gc.placeholder(gc.float32, (None, 3), name='x')\n"
                      "    return gc.sum(x)\n")
    out = run_cli("show", f"{target}:f")
    assert out.returncode == 1 and "unknown dims" in out.stderr


def test_cli_values_match_a_session():
    # the same target through a Session gives finite values (the CLI compiles what users run)
    ns = {}
    exec(TARGETS.read_text(), ns)
    with gc.Graph().as_default():
        fetches, shapes = ns["mlp"]()
        placeholders = {t.name: t for t in gc.get_default_graph().nodes if t.op == "placeholder"}
        rng = np.random.default_rng(0)
        feed = {placeholders["x"]: rng.standard_normal(shapes["x"]).astype(np.float32),
                placeholders["labels"]: rng.integers(0, 10, shapes["labels"]).astype(np.int32)}
        with gc.Session() as sess:
            values = sess.run(fetches, feed)
    assert all(np.isfinite(v).all() for v in values)


def test_profile_prints_the_table_and_writes_a_trace(tmp_path, capsys):
    trace = tmp_path / "chain.json"
    argv = ["profile", f"{TARGETS}:mlp", "--shape", "x=64,64", "--shape", "labels=64", "--runs", "2", "--no-peak"]
    assert main(argv + ["--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 run(s) on llvm") and "by kind" in out and "by step" in out
    assert "targets.py:" in out  # steps name the target's source lines
    assert json.loads(trace.read_text())["traceEvents"]
    assert main(argv + ["--backend", "reference", "--sort", "step", "--rows", "3"]) == 0
    assert "more step(s)" in capsys.readouterr().out


def test_profile_bad_arguments(tmp_path, capsys):
    target = f"{TARGETS}:mlp"
    assert main(["profile", target, "--trace", str(tmp_path / "missing" / "t.json"), "--no-peak"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["profile", target, "--shape", "x"]) == 1
    assert "expected NAME=DIMS" in capsys.readouterr().err
    assert main(["profile", target, "--runs", "0"]) == 1
    assert "--runs must be at least 1" in capsys.readouterr().err
