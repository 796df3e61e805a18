"""The exported C ABI under AddressSanitizer: bad dims, NULLs, small workspaces, overlapping
buffers and misaligned pointers, called from a C harness built with -fsanitize=address.

The library is exported with ``CC="cc -fsanitize=address"``, so its C wrapper (argument
checks, output copies, the built-in GEMM) is instrumented and memcpy/memset from the
generated code go through ASan's interceptors; every array the harness passes is its own
malloc block (redzones on both sides). Skipped only when the compiler cannot build and run
an ASan program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

CC = os.environ.get("CC", "cc")
ASAN = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]
pytestmark = pytest.mark.skipif(shutil.which(CC.split()[0]) is None, reason="needs a C compiler")

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "f.h"

#define NARGS @NARGS@
static const int64_t nbytes[NARGS] = {@NBYTES@};
static const int written[NARGS] = {@WRITTEN@};
static const int64_t dims0[] = {@DIMS@};
static int64_t dims[sizeof dims0 / sizeof dims0[0]];

static int call(void** p, void* ws, size_t wsb) { return f(@CALL@, ws, wsb); }

static unsigned char* pristine[NARGS];

static void* load(int k) {
    char name[32];
    snprintf(name, sizeof name, "arg%d.bin", k);
    unsigned char* data = malloc(nbytes[k] ? nbytes[k] : 1);
    FILE* fp = fopen(name, "rb");
    if (fp) { if (fread(data, 1, nbytes[k], fp) != (size_t)nbytes[k]) exit(90); fclose(fp); }
    else memset(data, 0xAB, nbytes[k]);
    return data;
}

/* Each array its own exact malloc block (ASan redzones), `shift` bytes past an aligned start. */
static void fresh(void** p, int shift, void** blocks) {
    for (int k = 0; k < NARGS; k++) {
        blocks[k] = malloc(nbytes[k] + shift + 1);
        p[k] = (unsigned char*)blocks[k] + shift;
        memcpy(p[k], pristine[k], nbytes[k]);
    }
}

static void release(void** blocks) { for (int k = 0; k < NARGS; k++) free(blocks[k]); }

static int untouched(void** p) {
    for (int k = 0; k < NARGS; k++)
        if (written[k] && memcmp(p[k], pristine[k], nbytes[k])) return 0;
    return 1;
}

static void save(const char* prefix, void** p) {
    for (int k = 0; k < NARGS; k++) {
        if (!written[k]) continue;
        char name[48];
        snprintf(name, sizeof name, "%s%d.bin", prefix, k);
        FILE* fp = fopen(name, "wb");
        fwrite(p[k], 1, nbytes[k], fp);
        fclose(fp);
    }
}

static void report(const char* what, int rc, void** p) { printf("%s %d %d\n", what, rc, untouched(p)); }

int main(void) {
    void *p[NARGS], *blocks[NARGS];
    for (int k = 0; k < NARGS; k++) pristine[k] = load(k);
    size_t wsb = f_workspace_size();
    memcpy(dims, dims0, sizeof dims);

    fresh(p, 0, blocks);                                  /* a valid call, malloc'd workspace */
    printf("valid %d\n", call(p, NULL, 0));
    save("out", p);
    release(blocks);

    for (int shift = 1; shift <= 3; shift += 2) {         /* misaligned arrays and workspace */
        fresh(p, shift, blocks);
        unsigned char* ws = malloc(wsb + shift + 1);
        char label[32];
        snprintf(label, sizeof label, "misaligned%d", shift);
        printf("%s %d\n", label, call(p, ws + shift, wsb));
        snprintf(label, sizeof label, "mis%d_", shift);
        save(label, p);
        free(ws);
        release(blocks);
    }

    fresh(p, 0, blocks);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {   /* every dim wrong, several ways */
        const int64_t bad[] = {dims0[d] + 1, dims0[d] - 1, 0, -1, INT64_MAX, INT64_MIN};
        for (int b = 0; b < 6; b++) {
            if (bad[b] == dims0[d]) continue;
            dims[d] = bad[b];
            char label[32];
            snprintf(label, sizeof label, "dims%zu_%d", d, b);
            report(label, call(p, NULL, 0), p);
        }
        dims[d] = dims0[d];
    }
    for (int k = 0; k < NARGS; k++) {                     /* each pointer NULL */
        void* keep = p[k];
        p[k] = NULL;
        char label[32];
        snprintf(label, sizeof label, "null%d", k);
        int rc = call(p, NULL, 0);
        p[k] = keep;
        report(label, rc, p);
    }
    unsigned char* small = malloc(wsb);                   /* workspaces one byte short, and tiny */
    report("workspace_short", call(p, small, wsb - 1), p);
    report("workspace_tiny", call(p, small, 1), p);
    free(small);
    unsigned char* ws = malloc(wsb + 4096);               /* overlaps */
    for (int a = 0; a < NARGS; a++) {
        for (int b = 0; b < NARGS; b++) {
            if (a == b || !(written[a] || written[b]) || !nbytes[a] || !nbytes[b]) continue;
            void* keep = p[a];
            p[a] = (unsigned char*)p[b] + (nbytes[b] > 4 ? 4 : 0);   /* a starts inside b */
            if (nbytes[a] <= nbytes[b] - (nbytes[b] > 4 ? 4 : 0)) {
                char label[32];
                snprintf(label, sizeof label, "overlap%d_%d", a, b);
                int rc = call(p, ws, wsb);
                p[a] = keep;
                report(label, rc, p);
            }
            p[a] = keep;
        }
        if (!nbytes[a]) continue;
        void* keep = p[a];                                 /* an argument inside the workspace */
        p[a] = ws + 64;
        memcpy(p[a], pristine[a], nbytes[a]);
        char label[32];
        snprintf(label, sizeof label, "in_workspace%d", a);
        printf("%s %d\n", label, call(p, ws, wsb + 4096));
        p[a] = keep;
    }
    free(ws);
    release(blocks);
    for (int k = 0; k < NARGS; k++) free(pristine[k]);
    printf("done\n");
    return 0;
}
"""


def _asan_works(tmp: Path) -> bool:
    (tmp / "probe.c").write_text("#include <stdlib.h>\nint main(void){char*p=malloc(4);p[0]=1;free(p);return 0;}\n")
    build = subprocess.run([*CC.split(), *ASAN, "-o", str(tmp / "probe"), str(tmp / "probe.c")],
                           capture_output=True)
    return build.returncode == 0 and subprocess.run([str(tmp / "probe")], capture_output=True).returncode == 0


def test_c_abi_under_address_sanitizer(tmp_path, monkeypatch):
    if not _asan_works(tmp_path):
        pytest.skip(f"{CC} cannot build and run an AddressSanitizer program")
    rng = np.random.default_rng(0)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (None, 3), name="x")
        labels = gc.placeholder(gc.int32, (None,), name="labels")
        w = gc.Variable(rng.standard_normal((3, 4)).astype(np.float32), name="w")
        loss = gc.nn.softmax_cross_entropy(x @ w, labels)
        (g,) = gc.gradients(loss, [w])
        fn = gc.function([x, labels], [loss, g], updates=[(w, w - 0.5 * g)])
        monkeypatch.setenv("CC", f"{CC} {' '.join(ASAN)}")
        fn.export(tmp_path, "f", signatures=[[(5, 3), (5,)], [(2, 3), (2,)]])
        monkeypatch.setenv("CC", CC)
        xs, ls = rng.standard_normal((5, 3)).astype(np.float32), np.array([0, 3, 1, 2, 3], np.int32)
        want_loss, want_grad = fn(xs, ls)
        want_w = fn.session.variable_value(w)
    if shutil.which("nm"):  # the library's C wrapper really is instrumented
        symbols = subprocess.run(["nm", "-D", str(tmp_path / "libf.so")], capture_output=True, text=True).stdout
        assert "__asan_" in symbols
    manifest = json.loads((tmp_path / "f.json").read_text())
    sig = manifest["signatures"][0]
    entries = manifest["inputs"] + manifest["state"] + manifest["outputs"]
    shapes = sig["inputs"] + sig["state"] + sig["outputs"]
    written = [0] * len(manifest["inputs"]) + [int(e["updated"]) for e in manifest["state"]] + \
        [1] * len(manifest["outputs"])
    state = (tmp_path / "f.state.bin").read_bytes()
    for k, arr in enumerate([xs, ls]):
        (tmp_path / f"arg{k}.bin").write_bytes(arr.tobytes())
    for j, e in enumerate(manifest["state"]):
        (tmp_path / f"arg{2 + j}.bin").write_bytes(state[e["offset"]:e["offset"] + e["nbytes"]])
    nbytes = [int(np.prod(s, dtype=np.int64)) * np.dtype(e["dtype"]).itemsize for s, e in zip(shapes, entries)]
    c_types = {"float32": "float", "int32": "int32_t", "float64": "double", "int64": "int64_t", "bool": "uint8_t"}
    call, d = [], 0
    for k, (s, e) in enumerate(zip(shapes, entries)):
        call.append(f"({'' if written[k] else 'const '}{c_types[e['dtype']]}*)p[{k}]")
        call += [f"dims[{d + i}]" for i in range(len(s))]
        d += len(s)
    source = (HARNESS.replace("@NARGS@", str(len(entries))).replace("@NBYTES@", ", ".join(map(str, nbytes)))
              .replace("@WRITTEN@", ", ".join(map(str, written)))
              .replace("@DIMS@", ", ".join(str(x) for s in shapes for x in s))
              .replace("@CALL@", ", ".join(call)))
    (tmp_path / "harness.c").write_text(source)
    build = subprocess.run([*CC.split(), *ASAN, "-std=c11", "-Wall", "-I", str(tmp_path), "-o",
                            str(tmp_path / "harness"), str(tmp_path / "harness.c"), "-L", str(tmp_path), "-lf",
                            f"-Wl,-rpath,{tmp_path}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99"}
    run = subprocess.run([str(tmp_path / "harness")], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    assert "AddressSanitizer" not in run.stderr
    results = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines()}
    assert "done" in results
    n_in, n_state = len(manifest["inputs"]), len(manifest["state"])
    for prefix in ("out", "mis1_", "mis3_"):
        got_w = np.frombuffer((tmp_path / f"{prefix}{n_in}.bin").read_bytes(), np.float32).reshape(3, 4)
        got_loss = np.frombuffer((tmp_path / f"{prefix}{n_in + n_state}.bin").read_bytes(), np.float32)
        got_grad = np.frombuffer((tmp_path / f"{prefix}{n_in + n_state + 1}.bin").read_bytes(),
                                 np.float32).reshape(3, 4)
        np.testing.assert_allclose(got_loss, [want_loss], rtol=1e-5)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
    assert results["valid"] == ["0"] and results["misaligned1"] == ["0"] and results["misaligned3"] == ["0"]
    expected = {"dims": "2", "null": "1", "workspace": "3", "overlap": "5", "in_workspace": "5"}
    seen = set()
    for label, values in results.items():
        for prefix, code in expected.items():
            if label.startswith(prefix) and not (prefix == "overlap" and label.startswith("overlap_")):
                assert values[0] == code, f"{label}: returned {values[0]}, expected {code}"
                if len(values) > 1:
                    assert values[1] == "1", f"{label}: an error call wrote to an output"
                seen.add(prefix)
    assert seen == set(expected), seen
