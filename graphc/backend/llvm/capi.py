"""The C side of an exported library: its header and the wrapper around compiled programs.

An export has one C function, ``int NAME(...)``, taking for every array (inputs, state,
outputs, in that order) a typed pointer followed by one ``int64_t`` per dim, then a
workspace pointer and its size. The wrapper matches the dims against the compiled shape
signatures (one compiled program per signature, `Variant`), checks pointers and overlaps,
builds the program's pointer table on its stack and calls the program's entry. It keeps no
mutable state except the two BLAS slots (`NAME_set_sgemm`/`NAME_set_dgemm`), read
atomically; unset, a built-in register-tiled GEMM runs instead.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...passes.memory import ALIGNMENT
from .probes import LIMIT as SYMBOL_LIMIT

__all__ = ["ERRORS", "Arg", "Variant", "c_identifier", "header", "source"]

C_TYPES = {"float32": "float", "float64": "double", "int32": "int32_t", "int64": "int64_t", "bool": "uint8_t"}
ERRORS = {  # code: (macro suffix, message); 0 is success
    1: ("ERR_NULL", "a required pointer argument is NULL"),
    2: ("ERR_DIMS", "the dims do not match any compiled shape signature"),
    3: ("ERR_WORKSPACE", "the workspace is smaller than the size NAME_workspace_size() returns"),
    4: ("ERR_NOMEM", "could not allocate scratch memory"),
    5: ("ERR_OVERLAP", "an output or updated state array overlaps another argument, or an argument overlaps the "
                       "workspace"),
    6: ("ERR_NUMERICS", "a check_numerics op found a NaN or Inf; the call stopped (no state was updated)"),
}
HOST_KINDS = {"print": 0, "check_numerics": 1}
_C_WORDS = set(keyword.kwlist) | {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
    "workspace", "workspace_bytes", "int64_t", "int32_t", "uint8_t", "size_t", "NULL"}


def c_identifier(name: str, taken: set[str]) -> str:
    """A C identifier made from `name`, not in `taken` (which it is added to)."""
    base = re.sub(r"\W", "_", name, flags=re.ASCII) or "arg"
    if base[0].isdigit():
        base = "_" + base
    candidate, k = base, 1
    while candidate in taken or candidate in _C_WORDS:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


@dataclass(frozen=True)
class Arg:
    """One array argument: role is input, state or output; `shape` may hold None (symbolic)."""

    name: str
    c_name: str
    role: str
    dtype: str
    shape: tuple[int | None, ...]
    written: bool  # outputs, and state that the function updates

    @property
    def c_type(self) -> str:
        return C_TYPES[self.dtype]


Dim = tuple[int, tuple[int, ...]]  # const + sum(coefs[j] * s_j): a fixed dim has no coefficients


@dataclass(frozen=True)
class Variant:
    """One compiled program: the shapes it takes and how its table is filled.

    A symbolic program (`graphc.backend.llvm.symbolic`) has dims and an arena size that are
    affine functions of its symbols; each symbol is read from one argument dim
    (`symbols`, flat dim indices) and stored in the program's thread-local `dims_global`.
    """

    entry: str  # symbol of the program's entry function
    shapes: tuple[tuple[Dim, ...], ...]  # one per argument
    slots: tuple[int, ...]  # table index per argument, -1 when the program does not read it
    copy_from: tuple[int, ...]  # per argument: -1, or the argument whose result it repeats
    consts: tuple[np.ndarray, ...]
    const_base: int
    arena_slot: int
    arena_bytes: Dim
    table_size: int
    host_slot: int = 0  # the table's host callback slot (its context follows)
    hosts: tuple[tuple[int, int, str, str], ...] = ()  # per host call: kind, summarize, message, where
    symbols: tuple[int, ...] = ()
    dims_global: str = ""

    def shape_text(self, index: int) -> str:
        """Argument `index`'s shape as the header shows it (``(s0, 784)``)."""
        from ...manifest import dim_text

        dims = [str(dim_text(c, k)) for c, k in self.shapes[index]]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def fixed_dims(shape: Sequence[int]) -> tuple[Dim, ...]:
    return tuple((int(d), ()) for d in shape)


def workspace_size(variants: Sequence[Variant]) -> int:
    """Bytes a caller-provided workspace needs for the fixed signatures (the largest arena plus
    alignment slack; symbolic ones: `NAME_workspace_size_symbolic`)."""
    largest = max([v.arena_bytes[0] for v in variants if not v.symbols] or [0])
    return largest + ALIGNMENT - 1 if largest else 0


def _params(args: Sequence[Arg]) -> list[tuple[str, Arg | None]]:
    """(C parameter declaration, its array argument or None for a dim) in call order."""
    params: list[tuple[str, Arg | None]] = []
    for a in args:
        params.append((f"{'' if a.written else 'const '}{a.c_type}* {a.c_name}", a))
        params += [(f"int64_t {a.c_name}_dim{d}", None) for d in range(len(a.shape))]
    return params


def _dims_doc(arg: Arg, variants: Sequence[Variant], index: int) -> str:
    symbolic = "(" + ", ".join("?" if d is None else str(d) for d in arg.shape)
    symbolic += ",)" if len(arg.shape) == 1 else ")"
    shown = ", ".join(sorted({v.shape_text(index) for v in variants}))
    return f"{arg.dtype}{symbolic}" + (f", compiled for {shown}" if any(d is None for d in arg.shape) else "")


def header(name: str, args: Sequence[Arg], variants: Sequence[Variant], info: dict[str, str],
           state_layout: Sequence[tuple[Arg, int, int]]) -> str:
    """The text of <name>.h. `info`: graphc version, target CPU, state file name."""
    up = name.upper()
    lines = [f"/* {name}.h: generated by graphc {info['version']} for the CPU {info['cpu']}. Do not edit. */",
             f"#ifndef {up}_H", f"#define {up}_H", "", "#include <stddef.h>", "#include <stdint.h>", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             "/* Return codes of the functions below (0 is success); see " + f"{name}_strerror. */",
             f"#define {up}_OK 0"]
    lines += [f"#define {up}_{macro} {code}  /* {msg.replace('NAME', name)} */"
              for code, (macro, msg) in ERRORS.items()]
    lines += ["", "/*", f" * {name}: computes the exported outputs (and applies the state updates).", " *",
              " * Every array is a plain C-contiguous (row-major) buffer given as a typed pointer, then one",
              " * int64_t per dim. The dims must fit one of the compiled shape signatures below (any",
              f" * other dims give {up}_ERR_DIMS and nothing is read or written). A signature's dim s0, s1,",
              f" * ... is symbolic: any value 1..{SYMBOL_LIMIT}, read where it stands alone, and every dim written",
              " * with it must equal its formula. A pointer may be NULL only when its array has no elements",
              f" * ({up}_ERR_NULL otherwise). Outputs and updated state must not overlap any other",
              f" * argument, and no argument may overlap the workspace ({up}_ERR_OVERLAP); inputs may",
              " * share memory with each other.", " *",
              " * State arrays hold values the function reads (and, when marked updated, overwrites",
              " * with their new values at the end of the call, after all reads). Their values at",
              f" * export time are in {info['state_file']} (offsets below).", " *",
              f" * workspace: scratch memory of at least {name}_workspace_size() bytes, or NULL to have",
              " * it allocated (malloc) and freed inside the call. A workspace may serve one call at a",
              " * time; give each thread its own.", " *",
              " * Thread safety: the library keeps no mutable state apart from the BLAS slots below, so",
              " * concurrent calls (each with its own output and workspace memory) are safe. Each call",
              " * runs on the calling thread only.", " *", " * Arguments:"]
    for i, a in enumerate(args):
        role = {"input": "input", "output": "output", "state": "state, updated" if a.written else "state, read"}[a.role]
        dims = (f"; dims {a.c_name}_dim0..{a.c_name}_dim{len(a.shape) - 1}" if len(a.shape) > 1
                else f"; dim {a.c_name}_dim0" if a.shape else "; a scalar (no dims)")
        lines.append(f" *   {a.c_name}: {role} '{a.name}', {_dims_doc(a, variants, i)}{dims}")
    lines.append(" *   workspace, workspace_bytes: see above")
    lines.append(" * Compiled shape signatures (all arrays, in argument order):")
    for v in variants:
        lines.append(" *   " + ", ".join(v.shape_text(i) for i in range(len(v.shapes))))
    groups = [", ".join(p for p, _ in _params([a])) for a in args] + ["void* workspace, size_t workspace_bytes"]
    lines += [" */", f"int {name}(\n    " + ",\n    ".join(groups) + ");",
              "", "/* Bytes of scratch memory a call of a fixed signature may need (0: none). */",
              f"size_t {name}_workspace_size(void);", ""]
    nsym = max(len(v.symbols) for v in variants)
    if nsym:
        symbols = ", ".join(f"int64_t s{j}" for j in range(nsym))
        lines += ["/* Bytes of scratch memory a call of the symbolic signature needs at these symbol values. */",
                  f"size_t {name}_workspace_size_symbolic({symbols});", ""]
    lines += [f"/* A static description of a return code ({up}_OK, {up}_ERR_*). */",
              f"const char* {name}_strerror(int code);", "",
              "/* The ABI hash recorded in the manifest (" + f"{name}.json) this library was built with. */",
              f"const char* {name}_abi(void);", "",
              "/*", " * BLAS. Matrix products call a Fortran-convention GEMM (column-major, every argument by",
              " * pointer, 32-bit ints), as the sgemm_/dgemm_ symbols of OpenBLAS, MKL, BLIS or the",
              " * reference BLAS. The library links no BLAS: until the host sets one here, a built-in",
              " * register-tiled GEMM (single-threaded) runs. Set the slots before calling from several",
              " * threads; NULL restores the built-in GEMM.", " */",
              f"typedef void (*{name}_sgemm_t)(const char* transa, const char* transb, const int* m, const int* n,",
              "    const int* k, const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,",
              "    const float* beta, float* c, const int* ldc);",
              f"typedef void (*{name}_dgemm_t)(const char* transa, const char* transb, const int* m, const int* n,",
              "    const int* k, const double* alpha, const double* a, const int* lda, const double* b,",
              "    const int* ldb, const double* beta, double* c, const int* ldc);",
              f"void {name}_set_sgemm({name}_sgemm_t sgemm);", f"void {name}_set_dgemm({name}_dgemm_t dgemm);", ""]
    if state_layout:
        lines.append(f"/* The state's values at export time in {info['state_file']}: byte offset and size of each. */")
        lines.append(f'#define {up}_STATE_FILE "{info["state_file"]}"')
        for a, offset, nbytes in state_layout:
            lines.append(f"#define {up}_STATE_OFFSET_{a.c_name} {offset}")
            lines.append(f"#define {up}_STATE_BYTES_{a.c_name} {nbytes}")
        lines.append("")
    lines += ["#ifdef __cplusplus", "}", "#endif", f"#endif /* {up}_H */", ""]
    return "\n".join(lines)


def source(name: str, args: Sequence[Arg], variants: Sequence[Variant], abi: str) -> str:
    """The C wrapper: dispatch on dims, checks, the table, the BLAS slots and fallback GEMM."""
    up = name.upper()
    ndims = sum(len(a.shape) for a in args)
    nsym = max(len(v.symbols) for v in variants)
    parts = [f"/* Wrapper of {name}: generated by graphc. Do not edit. */",
             "#include <math.h>", "#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>",
             "#include <string.h>", f'#include "{name}.h"', "",
             f"#define NARGS {len(args)}", f"#define NDIMS {ndims}", f"#define NVARIANTS {len(variants)}",
             f"#define NSYM {nsym}", f"#define NSYM1 {nsym + 1}", f"#define SYMBOL_LIMIT {SYMBOL_LIMIT}",
             f"#define TABLE_MAX {max(v.table_size for v in variants)}", f"#define ALIGN {ALIGNMENT}",
             '#define HIDDEN __attribute__((visibility("hidden")))', "",
             f"static const int32_t ndim[NARGS + 1] = {{{', '.join(str(len(a.shape)) for a in args) or '0'}}};",
             f"static const int32_t itemsize[NARGS + 1] = "
             f"{{{', '.join(str(np.dtype(a.dtype).itemsize) for a in args) or '0'}}};",
             _COMMON.replace("UP_", up + "_"), _gemm_source(name)]
    names: dict[bytes, str] = {}
    for vi, v in enumerate(variants):
        for c in v.consts:
            data = np.ascontiguousarray(c).tobytes()
            if data not in names:
                names[data] = f"const_{len(names)}"
                parts.append(f"static const unsigned char {names[data]}[{max(len(data), 1)}] "
                             f"__attribute__((aligned(ALIGN))) = {{{_byte_list(data)}}};")
        parts.append(f"extern void {v.entry}(void** table) HIDDEN;")
        consts = ", ".join(f"{names[np.ascontiguousarray(c).tobytes()]}" for c in v.consts) or "0"
        dims = ", ".join(_affine_c(d, nsym) for s in v.shapes for d in s) or "0"
        symbols = ", ".join(str(v.symbols[j]) if j < len(v.symbols) else "-1" for j in range(nsym)) or "0"
        hosts = ", ".join(f"{{{kind}, {summarize}, {_c_string(message)}, {_c_string(where)}}}"
                          for kind, summarize, message, where in v.hosts) or "{0, 0, 0, 0}"
        parts += [f"static const host_info_t v{vi}_hosts[{max(len(v.hosts), 1)}] = {{{hosts}}};",
                  f"static const int64_t v{vi}_dims[NDIMS * NSYM1 + 1] = {{{dims}}};",
                  f"static const int32_t v{vi}_symbols[NSYM + 1] = {{{symbols}}};",
                  f"static const int64_t v{vi}_arena[NSYM1] = {{{_affine_c(v.arena_bytes, nsym)}}};",
                  f"static const int32_t v{vi}_slot[NARGS] = {{{', '.join(map(str, v.slots))}}};",
                  f"static const int32_t v{vi}_copy[NARGS] = {{{', '.join(map(str, v.copy_from))}}};",
                  f"static const void* const v{vi}_consts[{max(len(v.consts), 1)}] = {{{consts}}};"]
        if v.dims_global:
            parts += [f"extern __thread int64_t {v.dims_global}[{len(v.symbols)}] HIDDEN;",
                      f"static int64_t* v{vi}_tls(void) {{ return {v.dims_global}; }}"]
    parts.append("static const variant_t variants[NVARIANTS] = {")
    for vi, v in enumerate(variants):
        tls = f"v{vi}_tls" if v.dims_global else "NULL"
        parts.append(f"    {{{v.entry}, v{vi}_dims, v{vi}_symbols, v{vi}_arena, v{vi}_slot, v{vi}_copy, v{vi}_consts, "
                     f"{len(v.consts)}, {v.const_base}, {v.arena_slot}, {v.table_size}, {tls}, "
                     f"v{vi}_hosts, {len(v.hosts)}, {v.host_slot}}},")
    parts.append("};")
    written = ", ".join("1" if a.written else "0" for a in args)
    parts += [f"static const int written[NARGS] = {{{written}}};", "",
              f"size_t {name}_workspace_size(void) {{ return {workspace_size(variants)}; }}", ""]
    if nsym:
        symbolic = next(vi for vi, v in enumerate(variants) if v.symbols)
        params = ", ".join(f"int64_t s{j}" for j in range(nsym))
        parts += [f"size_t {name}_workspace_size_symbolic({params}) {{",
                  f"    const int64_t s[NSYM] = {{{', '.join(f's{j}' for j in range(nsym))}}};",
                  "    for (int j = 0; j < NSYM; j++) if (s[j] < 1 || s[j] > SYMBOL_LIMIT) return 0;",
                  f"    int64_t bytes = affine(variants[{symbolic}].arena, s);",
                  "    return bytes > 0 ? (size_t)bytes + ALIGN - 1 : 0;", "}", ""]
    parts += [
              f'const char* {name}_abi(void) {{ return "{abi}"; }}', "",
              f"const char* {name}_strerror(int code) {{", "    switch (code) {",
              f'    case {up}_OK: return "success";']
    parts += [f'    case {up}_{macro}: return "{msg.replace("NAME", name)}";' for _, (macro, msg) in ERRORS.items()]
    parts += ['    default: return "unknown return code";', "    }", "}", ""]
    params = [p for p, _ in _params(args)] + ["void* workspace", "size_t workspace_bytes"]
    pointers = ", ".join(f"(void*){a.c_name}" for a in args)
    dim_values = ", ".join(f"{a.c_name}_dim{d}" for a in args for d in range(len(a.shape))) or "0"
    parts += [f"int {name}(" + ", ".join(params) + ") {",
              f"    void* const pointers[NARGS] = {{{pointers}}};",
              f"    const int64_t dims[NDIMS + 1] = {{{dim_values}}};",
              "    return dispatch(pointers, dims, workspace, workspace_bytes);", "}", ""]
    return "\n".join(parts)


def _c_string(text: str) -> str:
    """A C string literal of `text` (UTF-8; every byte outside printable ASCII as an octal escape)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        out.append("\\" + ch if ch in '"\\?' else ch if 32 <= byte < 127 else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _affine_c(dim: Dim, nsym: int) -> str:
    """A dim as the C tables hold it: const, then one coefficient per symbol."""
    const, coefs = dim
    return ", ".join([str(const)] + [str(coefs[j]) if j < len(coefs) else "0" for j in range(nsym)])


def _byte_list(data: bytes) -> str:
    if not data:
        return "0"
    return ",".join(map(str, data))


_COMMON = r"""
typedef struct {
    int32_t kind, summarize;   /* kind 0: print, 1: check_numerics */
    const char* message;
    const char* where;         /* the op and the user's line */
} host_info_t;

typedef struct {
    const host_info_t* info;
    int64_t failed;            /* the check that stopped the call, or -1 */
} host_state_t;

typedef struct {
    void (*entry)(void**);
    const int64_t* dims;       /* NDIMS x NSYM1: every argument's dims, each const + coefficients of the symbols */
    const int32_t* symbols;    /* NSYM: the flat dim index each symbol is read from, -1 if unused */
    const int64_t* arena;      /* NSYM1: arena bytes, const + coefficients */
    const int32_t* slot;       /* NARGS: table index, or -1 when the program does not read it */
    const int32_t* copy;       /* NARGS: -1, or the argument whose result this one repeats */
    const void* const* consts;
    int32_t nconsts, const_base, arena_slot;
    int64_t table_size;
    int64_t* (*tls_dims)(void); /* a symbolic program's thread-local dims, or NULL */
    const host_info_t* hosts;
    int32_t nhosts, host_slot;
} variant_t;

static double host_value(int32_t dtype, const void* data, int64_t i) {
    switch (dtype) {
    case 0: return ((const float*)data)[i];
    case 1: return ((const double*)data)[i];
    case 2: return ((const int32_t*)data)[i];
    case 3: return (double)((const int64_t*)data)[i];
    default: return ((const uint8_t*)data)[i];
    }
}

/* gc.print writes the message and the values (flat; `summarize` at each end) to stdout;
   gc.check_numerics stops the call when a value is NaN or Inf. */
static int32_t host_call(void* context, int64_t index, int32_t dtype, void* data, int64_t count) {
    host_state_t* state = (host_state_t*)context;
    const host_info_t* h = &state->info[index];
    if (h->kind == 1) {
        for (int64_t i = 0; i < count; i++)
            if (!isfinite(host_value(dtype, data, i))) {
                fprintf(stderr, "check_numerics: %s: NaN or Inf in %s\n", h->message, h->where);
                state->failed = index;
                return 1;
            }
        return 0;
    }
    printf("%s%s[", h->message, h->message[0] ? " " : "");
    for (int64_t i = 0; i < count; i++) {
        if (h->summarize >= 0 && count > 2 * (int64_t)h->summarize && i == h->summarize) {
            printf(" ...");
            i = count - h->summarize;
            if (i >= count) break;
        }
        if (dtype == 3) printf(i ? " %lld" : "%lld", (long long)((const int64_t*)data)[i]);
        else printf(i ? " %.7g" : "%.7g", host_value(dtype, data, i));
    }
    printf("]\n");
    fflush(stdout);
    return 0;
}

static int64_t affine(const int64_t* f, const int64_t* s) {
    int64_t v = f[0];
    for (int j = 0; j < NSYM; j++) v += f[1 + j] * s[j];
    return v;
}

/* 1 when `dims` fit variant v: its symbols (1..SYMBOL_LIMIT) read from their dims, every dim equal to its
 * formula; then s holds the symbols and bytes each argument's size (0 on overflow: no match) */
static int match(const variant_t* v, const int64_t* dims, int64_t* s, int64_t* bytes) {
    for (int j = 0; j < NSYM; j++) {
        s[j] = v->symbols[j] >= 0 ? dims[v->symbols[j]] : 0;
        if (v->symbols[j] >= 0 && (s[j] < 1 || s[j] > SYMBOL_LIMIT)) return 0;
    }
    for (int i = 0; i < NDIMS; i++)
        if (dims[i] != affine(v->dims + (size_t)i * NSYM1, s)) return 0;
    for (int a = 0, i = 0; a < NARGS; a++) {
        int64_t n = itemsize[a];
        for (int d = 0; d < ndim[a]; d++, i++)
            if (dims[i] < 0 || __builtin_mul_overflow(n, dims[i], &n)) return 0;
        bytes[a] = n;
    }
    return 1;
}

static const variant_t variants[NVARIANTS];
static const int written[NARGS];

static int overlaps(const void* a, int64_t na, const void* b, int64_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na > 0 && nb > 0 && x < y + (uintptr_t)nb && y < x + (uintptr_t)na;
}

static int dispatch(void* const* ptrs, const int64_t* dims, void* workspace, size_t workspace_bytes) {
    const variant_t* v = NULL;
    int64_t s[NSYM + 1], nbytes[NARGS + 1];
    for (int i = 0; i < NVARIANTS && !v; i++)
        if (match(&variants[i], dims, s, nbytes)) v = &variants[i];
    if (!v) return UP_ERR_DIMS;
    const int64_t* bytes = nbytes;
    for (int a = 0; a < NARGS; a++)
        if (!ptrs[a] && bytes[a] > 0) return UP_ERR_NULL;
    int64_t arena_bytes = affine(v->arena, s);
    size_t need = arena_bytes > 0 ? (size_t)arena_bytes + ALIGN - 1 : 0;
    if (need && workspace && workspace_bytes < need) return UP_ERR_WORKSPACE;
    for (int a = 0; a < NARGS; a++) {
        /* the program writes the workspace: no argument, not even an input, may lie in it */
        if (need && workspace && overlaps(ptrs[a], bytes[a], workspace, (int64_t)need)) return UP_ERR_OVERLAP;
        if (!written[a]) continue;
        for (int b = 0; b < NARGS; b++)
            if (b != a && overlaps(ptrs[a], bytes[a], ptrs[b], bytes[b])) return UP_ERR_OVERLAP;
    }
    void* owned = NULL;
    char* arena = (char*)workspace;
    if (need && !workspace) {
        owned = malloc(need);
        if (!owned) return UP_ERR_NOMEM;
        arena = (char*)owned;
    }
    void* table[TABLE_MAX] = {0};
    for (int a = 0; a < NARGS; a++)
        if (v->slot[a] >= 0) table[v->slot[a]] = ptrs[a];
    for (int c = 0; c < v->nconsts; c++) table[v->const_base + c] = (void*)v->consts[c];
    if (need) table[v->arena_slot] = arena + ((ALIGN - (uintptr_t)arena % ALIGN) % ALIGN);
    host_state_t host = {v->hosts, -1};
    if (v->nhosts) {
        table[v->host_slot] = (void*)host_call;
        table[v->host_slot + 1] = &host;
    }
    if (v->tls_dims) memcpy(v->tls_dims(), s, NSYM * sizeof(int64_t));
    v->entry(table);
    if (host.failed >= 0) {
        free(owned);
        return UP_ERR_NUMERICS;
    }
    for (int a = 0; a < NARGS; a++)
        if (v->copy[a] >= 0 && bytes[a] > 0) memcpy(ptrs[a], ptrs[v->copy[a]], (size_t)bytes[a]);
    free(owned);
    return 0;
}
"""


def _gemm_source(name: str) -> str:
    """The BLAS slots, the Fortran-convention entry points generated code calls, and the
    built-in GEMM they fall back to, for float and double."""
    parts = [_GEMM_COMMON]
    for t, letter, mr, v in (("float", "s", 16, 8), ("double", "d", 8, 4)):
        parts.append(_GEMM.replace("@NAME@", name).replace("@T@", t).replace("@X@", letter)
                     .replace("@MR@", str(mr)).replace("@VL@", str(v)))
    return "\n".join(parts)


_GEMM_COMMON = r"""
/* Built-in GEMM: C = alpha op(A) op(B) + beta C, column-major, in blocks of KC x NC of op(B)
 * and MC x KC of op(A), packed into panels; a micro-kernel keeps an MR x NR block of C in
 * vector registers. */
#define GEMM_NR 6
#define GEMM_KC 256
#define GEMM_MC 96
#define GEMM_NC 1536
static int gemm_min(int a, int b) { return a < b ? a : b; }
static int gemm_round(int a, int b) { return (a + b - 1) / b * b; }
static int gemm_trans(char t) { return t == 'T' || t == 't' || t == 'C' || t == 'c'; }
"""

_GEMM = r"""
typedef @T@ @X@_vec __attribute__((vector_size(32)));
#define @X@_MR @MR@
#define @X@_VL @VL@

static void @X@_pack_a(int mc, int kc, const @T@* a, int lda, int trans, @T@ alpha, @T@* dst) {
    for (int i0 = 0; i0 < mc; i0 += @X@_MR) {
        int mr = gemm_min(@X@_MR, mc - i0);
        for (int p = 0; p < kc; p++, dst += @X@_MR) {
            for (int i = 0; i < mr; i++)
                dst[i] = alpha * (trans ? a[p + (size_t)(i0 + i) * lda] : a[(i0 + i) + (size_t)p * lda]);
            for (int i = mr; i < @X@_MR; i++) dst[i] = 0;
        }
    }
}

static void @X@_pack_b(int kc, int nc, const @T@* b, int ldb, int trans, @T@* dst) {
    for (int j0 = 0; j0 < nc; j0 += GEMM_NR) {
        int nr = gemm_min(GEMM_NR, nc - j0);
        for (int p = 0; p < kc; p++, dst += GEMM_NR) {
            for (int j = 0; j < nr; j++)
                dst[j] = trans ? b[(j0 + j) + (size_t)p * ldb] : b[p + (size_t)(j0 + j) * ldb];
            for (int j = nr; j < GEMM_NR; j++) dst[j] = 0;
        }
    }
}

static void @X@_kernel(int kc, const @T@* ap, const @T@* bp, @T@* c, int ldc, int mr, int nr) {
    @X@_vec acc[GEMM_NR][2];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++, ap += @X@_MR, bp += GEMM_NR) {
        @X@_vec a0, a1;
        memcpy(&a0, ap, sizeof a0);
        memcpy(&a1, ap + @X@_VL, sizeof a1);
        for (int j = 0; j < GEMM_NR; j++) {
            acc[j][0] += a0 * bp[j];
            acc[j][1] += a1 * bp[j];
        }
    }
    if (mr == @X@_MR && nr == GEMM_NR) {
        for (int j = 0; j < GEMM_NR; j++)
            for (int h = 0; h < 2; h++) {
                @X@_vec cv;
                memcpy(&cv, c + (size_t)j * ldc + h * @X@_VL, sizeof cv);
                cv += acc[j][h];
                memcpy(c + (size_t)j * ldc + h * @X@_VL, &cv, sizeof cv);
            }
        return;
    }
    @T@ tile[GEMM_NR][@X@_MR];
    memcpy(tile, acc, sizeof tile);
    for (int j = 0; j < nr; j++)
        for (int i = 0; i < mr; i++) c[i + (size_t)j * ldc] += tile[j][i];
}

static void @X@_gemm(char ta, char tb, int m, int n, int k, @T@ alpha, const @T@* a, int lda, const @T@* b, int ldb,
                   @T@ beta, @T@* c, int ldc) {
    if (m <= 0 || n <= 0) return;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) c[i + (size_t)j * ldc] = beta == 0 ? 0 : beta * c[i + (size_t)j * ldc];
    if (k <= 0 || alpha == 0) return;
    int transa = gemm_trans(ta), transb = gemm_trans(tb);
    size_t kc_max = (size_t)gemm_min(GEMM_KC, k);
    size_t a_bytes = ((size_t)gemm_round(gemm_min(GEMM_MC, m), @X@_MR) * kc_max * sizeof(@T@) + 63) / 64 * 64;
    size_t b_bytes = ((size_t)gemm_round(gemm_min(GEMM_NC, n), GEMM_NR) * kc_max * sizeof(@T@) + 63) / 64 * 64;
    @T@* pa = (@T@*)aligned_alloc(64, a_bytes);
    @T@* pb = (@T@*)aligned_alloc(64, b_bytes);
    if (!pa || !pb) { /* no scratch memory: the same product, unblocked */
        free(pa);
        free(pb);
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++) {
                @T@ bpj = alpha * (transb ? b[j + (size_t)p * ldb] : b[p + (size_t)j * ldb]);
                for (int i = 0; i < m; i++)
                    c[i + (size_t)j * ldc] += (transa ? a[p + (size_t)i * lda] : a[i + (size_t)p * lda]) * bpj;
            }
        return;
    }
    for (int jc = 0; jc < n; jc += GEMM_NC) {
        int nc = gemm_min(GEMM_NC, n - jc);
        for (int pc = 0; pc < k; pc += GEMM_KC) {
            int kc = gemm_min(GEMM_KC, k - pc);
            @X@_pack_b(kc, nc, transb ? b + jc + (size_t)pc * ldb : b + pc + (size_t)jc * ldb, ldb, transb, pb);
            for (int ic = 0; ic < m; ic += GEMM_MC) {
                int mc = gemm_min(GEMM_MC, m - ic);
                const @T@* ablock = transa ? a + pc + (size_t)ic * lda : a + ic + (size_t)pc * lda;
                @X@_pack_a(mc, kc, ablock, lda, transa, alpha, pa);
                for (int jr = 0; jr < nc; jr += GEMM_NR)
                    for (int ir = 0; ir < mc; ir += @X@_MR)
                        @X@_kernel(kc, pa + (size_t)ir * kc, pb + (size_t)jr * kc,
                                   c + ic + ir + (size_t)(jc + jr) * ldc, ldc, gemm_min(@X@_MR, mc - ir),
                                   gemm_min(GEMM_NR, nc - jr));
            }
        }
    }
    free(pa);
    free(pb);
}

static @NAME@_@X@gemm_t @X@_slot;

void @NAME@_set_@X@gemm(@NAME@_@X@gemm_t fn) { __atomic_store_n(&@X@_slot, fn, __ATOMIC_RELEASE); }

HIDDEN void graphc_@X@gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const @T@* alpha,
                         const @T@* a, const int* lda, const @T@* b, const int* ldb, const @T@* beta, @T@* c,
                         const int* ldc) {
    @NAME@_@X@gemm_t fn = __atomic_load_n(&@X@_slot, __ATOMIC_ACQUIRE);
    if (fn) fn(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else @X@_gemm(*ta, *tb, *m, *n, *k, *alpha, a, *lda, b, *ldb, *beta, c, *ldc);
}
"""
