"""Crafted-file fuzzer: damage the files graphc reads and check that graphc refuses them cleanly.

Kinds of file, each with a valid original made first:

* ``graph``: a saved graph (`gc.save`), loaded with `gc.load` and, when it loads, run on
  both backends;
* ``checkpoint``: a `gc.train.Saver` file, restored into a session;
* ``cache``: a compile-cache entry (a program's object code or its description), read back by
  graphc's cache reader, which must refuse it or return it intact; every entry it accepts,
  and 2% of those it refuses, also by a compile of the same program, whose result must not
  change (the program is compiled once, not per case);
* ``export``: an export's manifest, state file and library, loaded with `gc.load_exported`
  and, when it loads, called (its result must not change).

Each case mutates one file: bytes (flips, special values, truncation, insertion, deletion)
or, for JSON parts, the document's structure (a value replaced, removed or duplicated).
JSON files are also re-sealed at random (their hash or checksum recomputed after the
mutation) so that the checks behind the hash are reached. The compile cache and the library
are never re-sealed: they hold machine code, which graphc must trust once it is intact.

Every case must end in a GraphcError or in a correct result. Another exception, a wrong
result or a crash is a finding: the kinds run in a child process each (address space
capped, so a huge allocation is a MemoryError, not the OOM killer), and a crash names the
case that was running, as does a hang (no outcome within `--timeout` s, 600 by default:
the child is killed). A finding prints the kind, seed, case number, the mutation and the
path of the mutated file, which stays on disk.

    python tests/fuzz/crafted_fuzz.py --cases 500 [--seed 0] [--kinds graph,export] [--timeout T]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import queue
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = ("graph", "checkpoint", "cache", "export")
ROOT = Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 16 << 30  # the child's cap: big allocations fail instead of waking the OOM killer
_SPECIAL_BYTES = (0, 1, 0x7F, 0x80, 0xFF)
_SPECIAL_VALUES = (0, -1, 1, 2, 3, 7, 2**31, -2**31 - 1, 2**63, 10**30, 1e308, -0.0, 0.5, float("nan"), "", "x",
                   "float64", None, True, False, [], {}, [1, 2], [None], {"tuple": [2**40, 3]}, {"tuple": [-5]},
                   {"dtype": "float64"}, {"dtype": "int64"}, {"float": "nan"})


# --- mutations ------------------------------------------------------------------------------

def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One byte-level damage of `data` and its description."""
    b = bytearray(data)
    n = len(b)
    op = rng.choice(("flip", "set", "truncate", "insert", "delete", "int64") if n else ("insert",))
    at = rng.randrange(n) if n else 0
    if op == "flip":
        bit = rng.randrange(8)
        b[at] ^= 1 << bit
        return bytes(b), f"flip bit {bit} of byte {at}"
    if op == "set":
        value = rng.choice(_SPECIAL_BYTES + (rng.randrange(256),))
        b[at] = value
        return bytes(b), f"set byte {at} to {value:#x}"
    if op == "truncate":
        return bytes(b[:at]), f"truncate to {at} bytes"
    if op == "insert":
        extra = bytes(rng.randrange(256) for _ in range(rng.choice((1, 8, 64))))
        return bytes(b[:at] + extra + b[at:]), f"insert {len(extra)} random bytes at {at}"
    if op == "delete":
        k = rng.choice((1, 8, 64))
        return bytes(b[:at] + b[at + k:]), f"delete {k} bytes at {at}"
    value = rng.choice((0, 1, 2**31, 2**63 - 1, 2**64 - 1, 2**32))
    at = min(at, max(n - 8, 0))
    b[at:at + 8] = struct.pack("<Q", value)[:len(b[at:at + 8])]
    return bytes(b), f"write int64 {value} at byte {at}"


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) into a JSON document."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _at(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def mutate_json(rng: random.Random, doc: Any) -> tuple[Any, str]:
    """One structural change of a JSON document (a copy) and its description."""
    doc = copy.deepcopy(doc)
    path = rng.choice(_paths(doc)[1:])
    parent, key = _at(doc, path[:-1]), path[-1]
    old = parent[key]
    op = rng.choice(("replace", "replace", "number", "remove", "duplicate"))
    if op == "number" and type(old) in (int, float):
        new = rng.choice((old + 1, old - 1, -old, old * 1000, old + 2**32))
        parent[key] = new
        return doc, f"{list(path)}: {old!r} -> {new!r}"
    if op == "remove":
        del parent[key]
        return doc, f"remove {list(path)}"
    if op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(old))
        return doc, f"duplicate {list(path)}"
    if op == "duplicate" and isinstance(parent, dict):
        parent[f"{key}_copy"] = copy.deepcopy(old)
        return doc, f"duplicate {list(path)} as {key}_copy"
    new = copy.deepcopy(rng.choice(_SPECIAL_VALUES))
    parent[key] = new
    return doc, f"{list(path)}: {json.dumps(old)[:60]} -> {json.dumps(new)}"


# --- the file kinds -----------------------------------------------------------------------

class Kind:
    """Makes valid originals once; then, per case, damages one file and checks the outcome."""

    def __init__(self, work: Path):
        self.work = work

    def case(self, rng: random.Random) -> tuple[str, Callable[[], str]]:
        """(description, a check that returns an outcome label or raises a finding)."""
        raise NotImplementedError


class FindingError(Exception):
    """A case that ended in something other than a GraphcError or a correct result."""


def _graphc():
    import graphc as gc

    return gc


def _feeds(gc: Any, fetches: Any) -> dict | None:
    """Small random feeds for the placeholders fetches need (None dims: 2), or None when too big."""
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    outputs = fetches if isinstance(fetches, list) else [fetches]
    from graphc.ir.traverse import toposort

    for n in toposort([t for t in outputs if isinstance(t, gc.Tensor)]):
        if n.op == "placeholder":
            shape = tuple(2 if d is None else d for d in n.shape)
            if int(np.prod(shape, dtype=object)) > 1 << 16:
                return None
            feeds[n] = rng.integers(0, 3, shape).astype(n.dtype) if n.dtype.kind in "iub" else \
                rng.standard_normal(shape).astype(n.dtype)
    return feeds


class GraphFile(Kind):
    def __init__(self, work: Path):
        super().__init__(work)
        gc = _graphc()
        import numpy as np

        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (None, 3), name="x")
            labels = gc.placeholder(gc.int32, (None,), name="labels")
            w = gc.Variable(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, name="w")
            h = gc.tanh(x @ w + gc.constant(np.ones(4, np.float32)))
            parts = gc.concatenate([h[:, :2], gc.transpose(gc.reshape(h[:, 2:], (-1, 2)))[::-1].T], axis=1)
            logits = gc.pad(parts, ((0, 0), (1, 0)))
            loss = gc.nn.softmax_cross_entropy(logits, labels)
            grads = gc.gradients(loss, [w])
            picked = gc.take(gc.exp(w), gc.constant(np.array([2, 0], np.int32)), axis=1)
            fetches = [loss, grads[0], gc.sum(picked, axis=0, keepdims=True), gc.where(x > 0, x, -x)]
            self.path = work / "graph.json"
            gc.save(fetches, self.path)
        self.doc = json.loads(self.path.read_text())
        self.original = self.path.read_bytes()

    def case(self, rng: random.Random) -> tuple[str, Callable[[], str]]:
        if rng.random() < 0.8:
            doc, what = mutate_json(rng, self.doc)
            data = json.dumps(doc).encode()
        else:
            data, what = mutate_bytes(rng, self.original)
        return f"graph.json: {what}", lambda: self.check(data)

    def check(self, data: bytes) -> str:
        gc = _graphc()
        self.path.write_bytes(data)
        try:
            fetches = gc.load(self.path).outputs
        except gc.GraphcError:
            return "refused"
        outputs = [t for t in (fetches if isinstance(fetches, (list, tuple)) else [fetches])
                   if isinstance(t, gc.Tensor)]
        feeds = _feeds(gc, outputs)
        if not outputs or feeds is None:
            return "loaded"
        results = []
        for backend in ("reference", "llvm"):
            try:
                # None dims: the template at once (the default builds it at a second size only)
                with gc.Session(outputs[0].graph, backend=backend, options=gc.CompileOptions(specialize=False)) as sess:
                    results.append(sess.run(outputs, feeds))
            except gc.GraphcError:
                results.append(None)
            except MemoryError:
                return "too big"
        return "ran" if all(r is not None for r in results) else "refused at run"


class CheckpointFile(Kind):
    def __init__(self, work: Path):
        super().__init__(work)
        gc = _graphc()
        import numpy as np

        self.graph = gc.Graph()
        with self.graph.as_default():
            self.vars = [gc.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w"),
                         gc.Variable(np.array([1, 2], np.int64), name="steps"),
                         gc.Variable(np.array(True), name="flag")]
            self.saver = gc.train.Saver()
        self.path = work / "model.ckpt"
        with gc.Session(self.graph) as sess:
            self.saver.save(sess, self.path)
        self.original = self.path.read_bytes()
        (n,) = struct.unpack("<Q", self.original[:8])
        self.header = json.loads(self.original[8:8 + n])
        self.body = self.original[8 + n:]

    def case(self, rng: random.Random) -> tuple[str, Callable[[], str]]:
        import hashlib

        if rng.random() < 0.5:
            data, what = mutate_bytes(rng, self.original)
        else:
            header, what = mutate_json(rng, self.header)
            body = self.body
            if rng.random() < 0.3:
                body, more = mutate_bytes(rng, body)
                what += f"; body: {more}"
            if rng.random() < 0.5 and isinstance(header, dict) and isinstance(header.get("__metadata__"), dict):
                header["__metadata__"]["sha256"] = hashlib.sha256(body).hexdigest()
                what += " (re-sealed)"
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            data = struct.pack("<Q", len(text)) + text + body
        return f"model.ckpt: {what}", lambda: self.check(data)

    def check(self, data: bytes) -> str:
        gc = _graphc()
        import numpy as np

        self.path.write_bytes(data)
        with gc.Session(self.graph) as sess:
            before = [sess.variable_value(v) for v in self.vars]
            try:
                self.saver.restore(sess, self.path)
            except gc.GraphcError:
                after = [sess.variable_value(v) for v in self.vars]
                if not all(np.array_equal(a, b) for a, b in zip(before, after)):
                    raise FindingError("a refused restore changed variables") from None
                return "refused"
            for v in self.vars:
                value = sess.variable_value(v)
                if value.shape != v.shape or value.dtype != v.dtype:
                    raise FindingError(f"restore gave {v.name} {value.dtype}{value.shape}")
        return "restored"


class CacheEntry(Kind):
    """A program is compiled once (its entries written by graphc: the object code, and the
    program's description that lets a later process skip planning, `template_cache`); each case
    writes a damaged copy of one of them and reads it back through `cache.load`, the only reader
    of cache entries. A refused entry (None) is a miss (the program is planned or compiled
    again), so nothing of it can reach the result: a share `FULL` of those cases, and every
    entry the reader accepts, also run the program end to end through a Session (the result
    must not change, and a refused entry must be replaced by a good one). So a case costs a
    file write and a checksum, not an LLVM compile (about 0.8 s under load)."""

    FULL = 0.02

    def __init__(self, work: Path):
        super().__init__(work)
        from graphc.backend.llvm import cache

        os.environ["GRAPHC_CACHE"] = "1"
        os.environ["GRAPHC_CACHE_DIR"] = str(work / "cache")
        self.want = self.run()
        # the program's entries, object code first (a repeated Session.run also caches graphc's
        # array-call routine, and the cache keeps graphc's source digest)
        digest = cache.source_digest().encode()
        found = [p for p in (work / "cache").rglob("*.o")
                 if b"graphc_array_call" not in p.read_bytes() and not p.read_bytes().endswith(digest)]
        self.entries = sorted(found, key=lambda p: b'"ir": ' in p.read_bytes())
        assert len(self.entries) == 2 and b'"ir": ' in self.entries[1].read_bytes()
        self.originals = [p.read_bytes() for p in self.entries]
        self.payloads = [cache.load(p.stem) for p in self.entries]
        assert None not in self.payloads and [p.read_bytes() for p in self.entries] == self.originals

    def run(self) -> Any:
        gc = _graphc()
        import numpy as np

        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (5,), name="x")
            y = gc.sum(gc.sin(x) * 3.0 + gc.exp(-x))
            with gc.Session() as sess:
                return sess.run(y, {x: np.linspace(-1, 1, 5, dtype=np.float32)})

    def case(self, rng: random.Random) -> tuple[str, Callable[[], str]]:
        which = rng.randrange(len(self.entries))
        data, what = mutate_bytes(rng, self.originals[which])
        full = rng.random() < self.FULL
        name = ("object code", "program description")[which]
        return (f"cache entry ({name}): {what}{' (end to end)' if full else ''}",
                lambda: self.check(data, full, which))

    def check(self, data: bytes, full: bool, which: int = 0) -> str:
        from graphc.backend.llvm import cache

        entry = self.entries[which]
        entry.write_bytes(data)
        payload = cache.load(entry.stem)
        if payload is not None and payload != self.payloads[which]:
            raise FindingError("the cache returned a damaged payload")
        if payload is None and not full:
            return "refused"
        got = self.run()
        if got != self.want:
            raise FindingError(f"the damaged cache entry changed the result: {got} != {self.want}")
        repaired = entry.read_bytes() == self.originals[which]
        if payload is None and not repaired:
            raise FindingError("the refused entry was not replaced by a good one")
        return "recompiled" if payload is None else "ignored"


class ExportFiles(Kind):
    def __init__(self, work: Path):
        super().__init__(work)
        gc = _graphc()
        import numpy as np

        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (None, 3), name="x")
            w = gc.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
            b = gc.Variable(np.array([0.5, -1.0], np.float32), name="b")
            y = gc.sum(gc.tanh(x @ w + b), axis=1)
            fn = gc.function([x], [y, gc.gradients(gc.sum(y), [w])[0]])
            self.good = work / "good"
            fn.export(self.good, "f", signatures=[[(4, 3)], [(2, 3)]])
        self.x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
        self.want = gc.load_exported(self.good, "f")(self.x)
        self.files = {name: (self.good / name).read_bytes() for name in ("f.json", "f.state.bin", "libf.so")}
        self.manifest = json.loads(self.files["f.json"])
        self.count = 0

    def case(self, rng: random.Random) -> tuple[str, Callable[[], str]]:
        from graphc import manifest as mf

        target = rng.choice(("f.json", "f.json", "f.state.bin", "libf.so"))
        if target == "f.json" and rng.random() < 0.8:
            doc, what = mutate_json(rng, self.manifest)
            if rng.random() < 0.5 and isinstance(doc, dict):
                try:
                    doc["abi_hash"] = mf.abi_hash(doc)
                    what += " (re-hashed)"
                except (TypeError, ValueError):
                    pass
            data = json.dumps(doc).encode()
        else:
            data, what = mutate_bytes(rng, self.files[target])
        return f"{target}: {what}", lambda: self.check(target, data)

    def check(self, target: str, data: bytes) -> str:
        gc = _graphc()
        import numpy as np

        self.count += 1
        case_dir = self.work / f"case{self.count}"  # a new path: dlopen keeps one library per path
        shutil.copytree(self.good, case_dir)
        (case_dir / target).write_bytes(data)
        try:
            f = gc.load_exported(case_dir, "f")
            got = f(self.x)
        except gc.GraphcError:
            return "refused"
        finally:
            shutil.rmtree(case_dir, ignore_errors=True)
        if not all(np.array_equal(g, w) for g, w in zip(got, self.want)):
            raise FindingError("a damaged export loaded and gave other results")
        return "loaded"


MAKERS: dict[str, Callable[[Path], Kind]] = {"graph": GraphFile, "checkpoint": CheckpointFile,
                                             "cache": CacheEntry, "export": ExportFiles}


# --- child and parent ---------------------------------------------------------------------

def child(kind: str, seed: int, cases: int, work: Path) -> int:
    """Run `cases` cases of one kind, printing CASE/RESULT lines; returns the number of findings."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    maker = MAKERS[kind](work)
    findings = 0
    for i in range(cases):
        rng = random.Random(f"{kind}:{seed}:{i}")
        what, check = maker.case(rng)
        print(f"CASE {i} {what}", flush=True)
        try:
            outcome = check()
        except FindingError as exc:
            findings += 1
            print(f"FINDING {i} {exc}", flush=True)
            continue
        except Exception as exc:  # noqa: BLE001 (anything but a GraphcError is a finding)
            findings += 1
            print(f"FINDING {i} {type(exc).__name__}: {exc}\n{traceback.format_exc()}", flush=True)
            continue
        print(f"RESULT {i} {outcome}", flush=True)
    return findings


def run_kind(kind: str, seed: int, cases: int, keep: Path, timeout: float = 600.0) -> tuple[dict[str, int], list[str]]:
    """Run one kind in a child process: (outcome counts, findings as printable reports). A case
    with no outcome after `timeout` s is a hang: the child is killed and the case reported."""
    work = Path(tempfile.mkdtemp(prefix=f"crafted-{kind}-", dir=keep))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(work / "stderr.txt", "w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", kind, "--seed", str(seed), "--cases",
                                 str(cases), "--work", str(work)], stdout=subprocess.PIPE, stderr=err, text=True,
                                env=env)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [*map(lines.put, proc.stdout), lines.put(None)], daemon=True).start()
        stdout, hung = [], False
        while (line := _next_line(lines, timeout)) is not None:
            if line is _HANG:
                hung = True
                proc.kill()
                break
            stdout.append(line)
        proc.wait()
        err.seek(0)
        stderr = err.read()
    counts: dict[str, int] = {}
    findings, last = [], None
    for line in stdout:
        line = line.rstrip("\n")
        if line.startswith("CASE "):
            last = line
        elif line.startswith("RESULT "):
            outcome = line.split(" ", 2)[2]
            counts[outcome] = counts.get(outcome, 0) + 1
            last = None
        elif line.startswith("FINDING "):
            findings.append(f"{kind} seed {seed}: {last}\n  {line}")
            last = None
    where = last or "before the first case"
    if hung:
        findings.append(f"{kind} seed {seed}: HANG, no outcome after {timeout:.0f} s at {where}\n"
                        f"  work dir (the mutated file is there): {work}\n  stderr: {stderr[-1500:]}")
    elif proc.returncode not in (0, 1):
        findings.append(f"{kind} seed {seed}: the child died with {proc.returncode} at {where}\n"
                        f"  work dir (the mutated file is there): {work}\n  stderr: {stderr[-1500:]}")
    elif not findings:
        shutil.rmtree(work, ignore_errors=True)
    else:
        findings = [f + f"\n  work dir: {work}" for f in findings]
    return counts, findings


_HANG = object()


def _next_line(lines: queue.Queue, timeout: float):
    """The child's next stdout line, None at its end, _HANG when none comes within `timeout` s."""
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return _HANG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200, help="cases per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds after which a case is a hang")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return 1 if child(args.child, args.seed, args.cases, args.work) else 0
    failed = False
    for kind in args.kinds.split(","):
        counts, findings = run_kind(kind, args.seed, args.cases, Path(tempfile.gettempdir()), args.timeout)
        print(f"{kind}: {sum(counts.values())} cases ok {counts}; {len(findings)} finding(s)")
        for f in findings:
            print(f)
        failed |= bool(findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
