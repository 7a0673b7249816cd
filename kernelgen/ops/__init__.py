"""Public ops, one module each: argument checks, the autograd Function, the dispatch call."""
