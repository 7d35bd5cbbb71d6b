"""Real GPU kernels (Triton, CuPy) for the attention variants: not built yet (issue 5).

Backends are imported lazily; the simulator never imports this package.
"""
