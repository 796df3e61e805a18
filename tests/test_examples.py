"""Every example runs at its small size (--quick) in a subprocess and prints sane results."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 120  # seconds per example; each takes a few seconds at --quick size


def run(name: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Float64Warning" not in proc.stderr, f"{name} mixes float64 into float32:\n{proc.stderr}"
    return proc.stdout


def floats(pattern: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(pattern, text)]


def test_every_example_is_tested():
    tested = {"linear_regression.py", "mlp_digits.py", "jacobian_modes.py", "hessian.py",
              "deep_chain_checkpoint.py", "profile_mlp.py", "cnn_digits.py"}
    tested |= {"transformer_char.py"}
    tested |= {"rnn_scan.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_linear_regression_recovers_parameters():
    out = run("linear_regression.py")
    (w, b), = re.findall(r"learned\s+w = (\S+)\s+b = (\S+)", out)
    assert abs(float(w) - 3.0) < 0.25 and abs(float(b) - 2.0) < 0.15, out


def test_mlp_digits_learns_and_repeats_its_losses():
    out = run("mlp_digits.py")
    accuracy, = floats(r"test: loss \S+\s+accuracy (\S+)", out)
    assert accuracy >= 0.85, out  # 2 epochs; the full 15-epoch run reaches >= 0.95
    losses = floats(r"epoch\s+\d+/\d+\s+loss (\S+)", out)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert "steps/s" in out and "compile: pass table" in out and "planned peak" in out
    assert floats(r"epoch\s+\d+/\d+\s+loss (\S+)", run("mlp_digits.py")) == losses


def test_cnn_digits_learns_with_batch_norm_in_both_modes():
    out = run("cnn_digits.py")
    losses = floats(r"epoch\s+\d+/\d+\s+loss (\S+)", out)
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0], out
    accuracy, = floats(r"test: loss \S+\s+accuracy (\S+)", out)
    assert accuracy >= 0.85, out  # inference mode (moving averages) after 3 epochs; the full run reaches >= 0.98
    assert "steps/s" in out


def test_jacobian_modes_agree_and_count_passes():
    out = run("jacobian_modes.py")
    assert len(floats(r"max \|J_fwd - J_rev\| = (\S+);", out)) == 2
    passes = re.findall(r"^\s+(fwd|rev)\s+(\d+)", out, flags=re.M)
    assert passes == [("fwd", "3"), ("rev", "24"), ("fwd", "24"), ("rev", "3")]


def test_hessian_newton_converges():
    out = run("hessian.py")
    norms = floats(r"\|grad\| (\S+)", out)
    assert norms[0] > 0.1 and min(norms) < 1e-10
    assert floats(r"max \|w_explicit - w_cg\| = (\S+)", out)[0] < 1e-8
    assert floats(r"max difference (\S+)", out)[0] < 1e-12


def test_deep_chain_checkpoint_policies():
    out = run("deep_chain_checkpoint.py", "--steps", "3")
    names = ("none", "sqrt", "mincut", "mincut*", "revolve(2)", "revolve(1)", "budget")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split() and line.split()[0] in names}
    rows = {k.rstrip("*"): v[1:] if k == "budget" else v for k, v in rows.items()}
    assert set(rows) == {"none", "sqrt", "mincut", "revolve(2)", "revolve(1)", "budget"}, out
    saved, peak, _, recomputed = (float(v) for v in rows["none"][:4])
    assert recomputed == 0
    assert int(rows["sqrt"][0]) < saved and int(rows["sqrt"][1]) < peak and int(rows["sqrt"][3]) > 0
    peaks = {k: int(v[1]) for k, v in rows.items()}
    assert all(p <= peak for p in peaks.values()), out  # no policy raises the planned peak
    assert peaks["revolve(1)"] <= peaks["revolve(2)"] < peak and peaks["budget"] <= 0.7 * peak, out
    losses = [float(v) for v in rows["none"][6:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert re.search(r"losses equal under every policy \(.*\): yes", out), out


def test_profile_mlp_prints_the_table_and_writes_a_trace(tmp_path):
    import json

    trace = tmp_path / "trace.json"
    out = run("profile_mlp.py", "--runs", "2", "--trace", str(trace))
    assert out.startswith("2 run(s) on llvm") and "by step" in out and "profile_mlp.py:" in out
    events = json.loads(trace.read_text())["traceEvents"]
    assert sum(e["ph"] == "X" and e["cat"] == "run" for e in events) == 2


def test_transformer_char_loss_goes_down_and_samples():
    out = run("transformer_char.py")
    losses = floats(r"step\s+\d+\s+loss (\S+)", out)
    assert len(losses) >= 5 and losses[-1] < losses[0] - 0.5, out
    (sample,) = re.findall(r"sample: '(.*)'$|sample: \"(.*)\"$", out, flags=re.M)
    assert len("".join(sample)) >= 20, out


def test_rnn_scan_trains_and_compiles_independently_of_the_length():
    out = run("rnn_scan.py", "--steps", "12")
    for kind in ("tanh RNN", "LSTM"):
        part = out.split(kind + "\n", 1)[1]
        steps = [int(v) for v in re.findall(r"compile, +\d+-step sequences: +\S+ s \((\d+) program steps\)", part)[:2]]
        assert len(steps) == 2 and abs(steps[0] - steps[1]) <= 2, out  # one loop, whatever the length
        first, last = (float(v) for v in re.findall(r"loss: (\S+) -> (\S+)", part)[0])
        assert last < first, out
        rows = {line.split()[0]: line.split()[1:] for line in part.splitlines()[:20]
                if line.split() and line.split()[0] in ("none", "sqrt", "revolve(4)")}
        assert set(rows) == {"none", "sqrt", "revolve(4)"}, out
        peak = int(rows["none"][1].replace(",", ""))
        assert all(int(v[1].replace(",", "")) <= peak for v in rows.values()), out  # no policy raises the peak
