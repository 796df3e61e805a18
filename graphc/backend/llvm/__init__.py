"""LLVM backend: JIT-compiled kernels, math library, BLAS calls, object cache, thread pool."""
