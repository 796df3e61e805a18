"""`jit.compile_ir` with a function giving the symbols: called once, on a thread while the module
compiles (a cache miss), its errors raised by the compile, and a module that does not compile
raises and lets that thread finish."""

from __future__ import annotations

import ctypes

import pytest

from graphc.backend.llvm import jit

_IR = """
declare i64 @"ext"(i64)

define i64 @"entry_{tag}"(i64 %x) {{
  %y = call i64 @"ext"(i64 %x)
  %z = add i64 %y, {tag}
  ret i64 %z
}}
"""
_EXT = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)


def test_symbols_given_by_a_function_link_the_module():
    ext = _EXT(lambda x: 3 * x)
    calls = []

    def symbols():
        calls.append(1)
        return {"ext": ctypes.cast(ext, ctypes.c_void_p).value}

    compiled = jit.compile_ir(_IR.format(tag=17), "entry_17", symbols)
    assert not compiled.from_cache and calls == [1]
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(compiled.address)(5) == 32
    again = jit.compile_ir(_IR.format(tag=17), "entry_17", symbols)  # a cache hit resolves them here
    assert again.from_cache and calls == [1, 1]
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(again.address)(1) == 20


def test_an_error_of_the_symbols_function_is_the_compiles():
    def symbols():
        raise LookupError("no such routine")

    with pytest.raises(LookupError, match="no such routine"):
        jit.compile_ir(_IR.format(tag=18), "entry_18", symbols)


def test_a_module_that_does_not_compile_raises_and_releases_the_symbols_thread():
    with pytest.raises(RuntimeError):
        jit.compile_ir("define i64 @\"broken\"() {\n  ret i32 0\n}\n", "broken", lambda: {})
    for thread in list(jit._running):  # the symbols' thread was let go (it would wait for ever else)
        thread.join(timeout=60)
        assert not thread.is_alive()
