"""Ahead-of-time compilation: a program's LLVM IR to an object file, objects to a shared library.

The IR is the same the JIT compiles; here it is optimized and emitted for a named CPU
(default ``x86-64-v3``: AVX2, FMA, BMI2, the x86-64 microarchitecture level of Haswell and
Zen 1 and later) as position-independent code, with the entry renamed and hidden so
several programs, and several exported libraries, coexist in one process. ``cc`` links
the objects with the generated C wrapper; a version script exports only the names the
header declares.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from llvmlite import binding as llvm

from ...errors import GraphcError
from . import shared
from .codegen import ENTRY
from .jit import _lock, optimize_module

__all__ = ["DEFAULT_CPU", "emit_object", "link_library", "resolve_cpu"]

DEFAULT_CPU = "x86-64-v3"


def resolve_cpu(cpu: str) -> tuple[str, str]:
    """(LLVM CPU name, feature string) for "host" or a CPU name such as "x86-64-v3"."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    if cpu == "host":
        return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    if cpu.startswith("x86-64") and platform.machine().lower() not in ("x86_64", "amd64"):
        raise GraphcError(f"cpu {cpu!r} is an x86-64 level but this machine is {platform.machine()}; "
                          "use cpu='host'")
    return cpu, ""


def _target_machine(cpu: str, features: str) -> llvm.TargetMachine:
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, reloc="pic", codemodel="default")


def emit_object(ir_text: str, entry: str, cpu: str, features: str) -> bytes:
    """Object code of one program for `cpu`, its entry function renamed to `entry` (hidden)."""
    with _lock:
        tm = _target_machine(cpu, features)
        mod = llvm.parse_assembly(ir_text)
        for name in shared.declared(ir_text):  # the library defines the shared functions it calls
            mod.link_in(llvm.parse_assembly(shared.definition(name)))
            mod.get_function(name).linkage = "internal"  # each program of the library has its copy
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        fn = mod.get_function(ENTRY)
        fn.name = entry
        fn.visibility = "hidden"
        return tm.emit_object(optimize_module(mod, tm))


def thread_local_dims(ir_text: str, name: str) -> str:
    """A symbolic program's IR with its dims global renamed to `name`, hidden and thread-local:
    the C wrapper sets it before each call, and concurrent calls on other threads keep theirs."""
    from .template import DIMS

    text = ir_text.replace(f'@"{DIMS}" = global', f'@"{name}" = hidden thread_local global', 1)
    return text.replace(f'@"{DIMS}"', f'@"{name}"')


def compiler() -> str:
    """The C compiler: ``$CC`` if set, else ``cc``."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        raise GraphcError(f"exporting a library needs a C compiler to link it: {cc!r} is not on PATH (set CC)")
    return cc


def link_library(out: Path, c_source: Path, objects: Sequence[Path], cpu: str, exported: Sequence[str]) -> None:
    """Compile `c_source` for `cpu` and link it with `objects` into the shared library `out`."""
    script = out.with_suffix(".map")
    script.write_text("{\n  global:\n" + "".join(f"    {n};\n" for n in exported) + "  local: *;\n};\n")
    march = "-march=native" if cpu == "host" else f"-march={cpu}"
    cmd = [*compiler().split(), "-shared", "-fPIC", "-O3", march, "-std=c11", "-Wall", "-Wno-psabi",
           "-o", str(out), str(c_source), *map(str, objects),
           f"-Wl,--version-script={script}", "-lm"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        script.unlink(missing_ok=True)
    if result.returncode != 0:
        raise GraphcError(f"linking {out.name} failed ({' '.join(cmd)}):\n{result.stderr.strip()}")
