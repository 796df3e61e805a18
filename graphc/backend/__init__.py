"""Backends that execute graphs: the numpy reference interpreter and the LLVM compiler."""
