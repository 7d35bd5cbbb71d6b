"""Element sizes, accumulate types and architectures: the names every other module checks against."""
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
ACCUM_TYPES = ("fp32", "fp16")
ARCHS = ("ampere", "ada", "hopper", "blackwell", "cdna3")
