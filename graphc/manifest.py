"""The manifest of an export (<name>.json): writing it, hashing it, and validating it on load.

Every field is covered by `abi_hash` (which the library also returns, so a library and a
manifest from different exports disagree) except ``library``, the size and SHA-256 of
``lib<name>.so``: the library embeds the hash, so its own digest cannot be inside it. The
loader checks that digest against the file before dlopen, so a truncated or replaced
library is an error, never a SIGBUS. The state file's size and digest are hashed fields.

`validate` checks the type and the consistency of every field (dtypes, C names, shapes
against signatures, state offsets and sizes, file names), so a manifest that a user edited
and re-hashed is refused with a message rather than a KeyError or an out-of-bounds read.
Needs numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GraphcError

FORMAT = "graphc-export"
FORMAT_VERSION = 2
STATE_ALIGN = 64
ROLES = ("inputs", "state", "outputs")
DTYPES = ("float32", "float64", "int32", "int64", "bool")
_UNHASHED = ("abi_hash", "library")
_KEYS = {"format", "format_version", "name", "graphc_version", "target", "files", "single_output", "function",
         *ROLES, "signatures", "workspace_bytes", "state_file", *_UNHASHED}
_C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def digest(data: bytes) -> dict[str, Any]:
    """Size and SHA-256 of a file's contents, as the manifest records them."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def abi_hash(manifest: dict[str, Any]) -> str:
    """SHA-256 of every field of a manifest but `abi_hash` and `library`."""
    keep = {k: v for k, v in manifest.items() if k not in _UNHASHED}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read(directory: Path, name: str) -> dict[str, Any]:
    """The manifest of export `name` in `directory`, validated (GraphcError otherwise)."""
    path = directory / f"{name}.json"
    try:
        manifest = json.loads(path.read_text())
    except OSError as exc:
        raise GraphcError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GraphcError(f"the manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GraphcError(f"{path} is not a graphc export manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise GraphcError(f"{path} has format version {manifest.get('format_version')!r}; this graphc reads "
                          f"version {FORMAT_VERSION} (re-export with this graphc)")
    if manifest.get("name") != name:
        raise GraphcError(f"{path} describes the export {manifest.get('name')!r}, not {name!r}")
    if manifest.get("abi_hash") != abi_hash(manifest):
        raise GraphcError(f"the manifest {path} was modified after export (its fields no longer match its abi_hash)")
    try:
        validate(manifest, name)
    except _InvalidError as exc:
        raise GraphcError(f"the manifest {path} is invalid: {exc}") from None
    return manifest


def check_file(path: Path, recorded: dict[str, Any], what: str) -> bytes:
    """The contents of `path` if its size and SHA-256 are `recorded`; size is checked first."""
    try:
        size = path.stat().st_size
        if size != recorded["bytes"]:
            raise GraphcError(f"the {what} {path} has {size} bytes, the manifest records {recorded['bytes']}: it was "
                              "truncated, modified or comes from another export; re-export")
        data = path.read_bytes()
    except OSError as exc:
        raise GraphcError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        raise GraphcError(f"the {what} {path} does not match the manifest (SHA-256 differs): it was modified or "
                          "comes from another export; re-export")
    return data


class _InvalidError(Exception):
    pass


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise _InvalidError(message)


def _is_int(v: Any, low: int = 0) -> bool:
    return type(v) is int and v >= low


def _shape(v: Any, symbolic: bool) -> bool:
    return isinstance(v, list) and all(_is_int(d) or (symbolic and d is None) for d in v)


_TERM = re.compile(r"(?:(-?\d+)\*)?s(\d+)|(-?\d+)")


def parse_dim(v: Any) -> tuple[int, dict[int, int]] | None:
    """A signature dim: an int, or the text of an affine function of the symbols (``"s0"``,
    ``"2*s0+-1"``: terms joined by ``+``) as (constant, {symbol: coefficient}); None if malformed."""
    if _is_int(v):
        return v, {}
    if not isinstance(v, str) or not v:
        return None
    const, coefs = 0, {}
    for term in v.split("+"):
        m = _TERM.fullmatch(term)
        if m is None:
            return None
        if m.group(3) is not None:
            const += int(m.group(3))
        else:
            j = int(m.group(2))
            coefs[j] = coefs.get(j, 0) + int(m.group(1) or 1)
    return const, coefs


def dim_text(const: int, coefs: Any) -> int | str:
    """The signature form of ``const + sum(coefs[j] * s_j)``: an int when no symbol is involved."""
    terms = [f"s{j}" if c == 1 else f"{c}*s{j}" for j, c in enumerate(coefs) if c]
    if not terms:
        return int(const)
    return "+".join(terms + ([str(const)] if const else []))


def bind_symbols(shapes: Any, inputs: Any) -> dict[int, int] | None:
    """The symbol values given by input `shapes` for a signature's `inputs` (each symbol read
    where it stands alone, ``"sJ"``), or None when some dim does not match."""
    if len(shapes) != len(inputs):
        return None
    symbols: dict[int, int] = {}
    for shape, dims in zip(shapes, inputs):
        if len(shape) != len(dims):
            return None
        for fed, dim in zip(shape, dims):
            if isinstance(dim, str) and _TERM.fullmatch(dim) and dim.startswith("s"):
                symbols.setdefault(int(dim[1:]), int(fed))
    for shape, dims in zip(shapes, inputs):
        for fed, dim in zip(shape, dims):
            if eval_dim(dim, symbols) != fed:
                return None
    return symbols


def eval_dim(v: Any, symbols: dict[int, int]) -> int | None:
    """A signature dim's value at these symbol values (None: a symbol is unbound)."""
    const, coefs = parse_dim(v)
    if any(j not in symbols for j in coefs):
        return None
    return const + sum(c * symbols[j] for j, c in coefs.items())


def _digest_ok(v: Any) -> bool:
    return (isinstance(v, dict) and set(v) == {"bytes", "sha256"} and _is_int(v["bytes"])
            and isinstance(v["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", v["sha256"]) is not None)


def validate(m: dict[str, Any], name: str) -> None:
    """Raise _InvalidError naming the first field of manifest `m` that is malformed or inconsistent."""
    _need(set(m) == _KEYS, f"fields {sorted(set(m) ^ _KEYS)} are missing or unknown")
    _need(m["function"] == name, "function differs from name")
    _need(isinstance(m["graphc_version"], str), "graphc_version is not a string")
    target = m["target"]
    _need(isinstance(target, dict) and set(target) == {"cpu", "features"}
          and all(isinstance(v, str) for v in target.values()), "bad target")
    _need(m["files"] == {"library": f"lib{name}.so", "header": f"{name}.h", "state": f"{name}.state.bin"},
          "files are not the export's own file names")
    _need(_digest_ok(m["library"]) and _digest_ok(m["state_file"]), "bad library or state_file digest")
    _need(_is_int(m["workspace_bytes"]), "workspace_bytes is not a non-negative int")
    c_names: set[str] = set()
    for role in ROLES:
        _need(isinstance(m[role], list), f"{role} is not a list")
        keys = {"name", "c_name", "dtype", "shape"} | ({"updated", "offset", "nbytes"} if role == "state" else set())
        for e in m[role]:
            _need(isinstance(e, dict) and set(e) == keys, f"an entry of {role} does not have the fields {sorted(keys)}")
            _need(isinstance(e["name"], str), f"{role}: bad name {e['name']!r}")
            _need(isinstance(e["c_name"], str) and _C_NAME.fullmatch(e["c_name"]) is not None
                  and e["c_name"] not in c_names, f"{role}: bad or repeated c_name {e['c_name']!r}")
            c_names.add(e["c_name"])
            _need(e["dtype"] in DTYPES, f"{e['name']}: unsupported dtype {e['dtype']!r}")
            _need(_shape(e["shape"], symbolic=role != "state"), f"{e['name']}: bad shape {e['shape']!r}")
    _need(isinstance(m["single_output"], bool) and (not m["single_output"] or len(m["outputs"]) == 1),
          "single_output is not a bool, or is true with several outputs")
    end = 0
    for e in m["state"]:
        _need(isinstance(e["updated"], bool), f"{e['name']}: updated is not a bool")
        nbytes = math.prod(e["shape"]) * np.dtype(e["dtype"]).itemsize
        _need(_is_int(e["offset"]) and e["offset"] % STATE_ALIGN == 0 and e["offset"] >= end,
              f"{e['name']}: bad state offset {e['offset']!r}")
        _need(e["nbytes"] == nbytes, f"{e['name']}: nbytes {e['nbytes']!r} is not {nbytes}")
        end = e["offset"] + nbytes
    _need(end <= m["state_file"]["bytes"], "the state arrays do not fit in the state file")
    _need(isinstance(m["signatures"], list) and m["signatures"], "signatures is empty")
    seen = set()
    for sig in m["signatures"]:
        _need(isinstance(sig, dict) and set(sig) - {"workspace"} == set(ROLES),
              "a signature lacks inputs, state or outputs, or has unknown fields")
        inputs = sig["inputs"] if isinstance(sig["inputs"], list) else []  # not a list: refused below
        bound = {int(d[1:]) for shape in inputs if isinstance(shape, list) for d in shape
                 if isinstance(d, str) and re.fullmatch(r"s\d+", d)}
        for role in ROLES:
            _need(isinstance(sig[role], list) and len(sig[role]) == len(m[role]),
                  f"a signature has {len(sig[role]) if isinstance(sig[role], list) else '?'} {role} shapes "
                  f"for {len(m[role])} {role}")
            for shape, e in zip(sig[role], m[role]):
                dims = [parse_dim(d) for d in shape] if isinstance(shape, list) else [None]
                _need(all(d is not None and set(d[1]) <= bound for d in dims) and len(shape) == len(e["shape"])
                      and all(d == s or (d is None and (role != "state" or _is_int(s)))
                              for d, s in zip(e["shape"], shape)),
                      f"{e['name']}: signature shape {shape!r} does not fit {e['shape']!r}")
        if "workspace" in sig:
            work = parse_dim(sig["workspace"])
            _need(work is not None and set(work[1]) <= bound, f"bad signature workspace {sig['workspace']!r}")
        key = json.dumps(sig["inputs"])
        _need(key not in seen, f"input shapes {sig['inputs']} appear in two signatures")
        seen.add(key)
