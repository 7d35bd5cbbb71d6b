"""Test session setup. Without a GPU the Triton kernels run under the interpreter, which must be
switched on before triton is first imported (so here, before any test module loads)."""
import os

if not os.path.exists("/dev/nvidia0") and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"
