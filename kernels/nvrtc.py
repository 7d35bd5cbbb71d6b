"""Compile CUDA C++ with NVRTC and read a kernel's register and shared-memory use, without a GPU.

NVRTC (the CUDA runtime compiler) needs no device: it turns a source string into PTX and, for a real
architecture (``sm_XX``), a cubin. CuPy ships the bindings (``cupy_backends.cuda.libs.nvrtc``, the
module behind ``cupy.cuda.compiler``), and the ``nvidia-cuda-nvrtc-cu12`` wheel the library. This is
how the CPU-only tests check that every CUDA source of ``attnsim.kernels`` compiles for the cards the
hardware profiles describe.

``resource_usage`` assembles that PTX with the ``ptxas`` that Triton bundles
(``<triton>/backends/nvidia/bin/ptxas``) and reads its ``-v`` report: registers per thread and static
shared memory per block, the two figures that set a kernel's occupancy. NVRTC 12.8 emits PTX ISA 8.7,
which Triton 3.6's ptxas (CUDA 12.8) accepts; an older ptxas would reject it.

CuPy and Triton are imported inside the functions: importing this module imports neither.
"""
import os
import re
import subprocess
import tempfile

_ARCH = re.compile(r"(sm|compute)_\d+[af]?")


class NVRTCCompileError(RuntimeError):
    """NVRTC rejected a source; the message carries NVRTC's own log."""


def compile_source(source: str, name: str, arch: str = "sm_80", options=()) -> dict:
    """Compile one CUDA C++ source with NVRTC.

    Args:
        source: the CUDA C++ text. Kernels meant to be looked up by name should be ``extern "C"``.
        name: the program's file name, as NVRTC prints it in diagnostics (e.g. ``"qk_scores.cu"``).
        arch: ``"sm_XX"`` gives PTX and a cubin for that card; ``"compute_XX"`` gives PTX only.
        options: further NVRTC options, e.g. ``("-std=c++17", "-lineinfo")``.

    Returns:
        ``{"arch", "ptx" (str), "cubin" (bytes, or None for a virtual arch), "log" (str)}``.

    Raises:
        ValueError: ``arch`` is not ``sm_XX`` or ``compute_XX``.
        NVRTCCompileError: the source does not compile; the message holds the NVRTC log.
    """
    if not _ARCH.fullmatch(arch):
        raise ValueError(f"{arch=} is not of the form sm_XX or compute_XX")
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"-arch={arch}", *options])
        except nvrtc.NVRTCError as e:
            raise NVRTCCompileError(f"NVRTC failed to compile {name} for {arch}: {e}\n"
                                    f"{_text(nvrtc.getProgramLog(prog))}") from None
        return {
            "arch": arch,
            "ptx": _text(nvrtc.getPTX(prog)),
            "cubin": bytes(nvrtc.getCUBIN(prog)) if arch.startswith("sm_") else None,
            "log": _text(nvrtc.getProgramLog(prog)),
        }
    finally:
        nvrtc.destroyProgram(prog)


def _text(b) -> str:
    """NVRTC hands back NUL-terminated byte strings (or str, depending on the binding version)."""
    return (b.decode() if isinstance(b, bytes) else b).rstrip("\x00")


def ptxas_path() -> str | None:
    """Triton's bundled ptxas, or None when Triton (or its NVIDIA backend) is not installed."""
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    return path if os.access(path, os.X_OK) else None


_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def resource_usage(ptx: str, arch: str) -> dict | None:
    """Registers per thread and static shared memory per block of every kernel in ``ptx``.

    Runs ``ptxas -v --gpu-name=<arch> -o /dev/null`` and parses its report, whose lines read
    ``Compiling entry function 'NAME' for 'sm_80'`` then ``Used N registers, ... M bytes smem, ...``.

    Args:
        ptx: PTX text, e.g. ``compile_source(...)["ptx"]``.
        arch: a real architecture, ``"sm_XX"``.

    Returns:
        ``{kernel_name: {"registers": N, "smem_bytes": M, "spill_store_bytes": S, "spill_load_bytes": L}}``,
        or None when no ptxas is installed.

    Raises:
        RuntimeError: ptxas rejects the PTX; the message holds its output.
    """
    ptxas = ptxas_path()
    if ptxas is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        run = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", "-o", os.devnull, f.name],
                             capture_output=True, text=True)
    report = run.stdout + run.stderr
    if run.returncode != 0:
        raise RuntimeError(f"ptxas failed for {arch} (exit {run.returncode}):\n{report}")
    usage, kernel, spills = {}, None, {}
    for line in report.splitlines():
        if m := _ENTRY.search(line):
            kernel = m.group(1)
        elif kernel is not None and (m := _SPILL.search(line)):  # "N bytes stack frame, S bytes spill stores, ..."
            spills[kernel] = (int(m.group(1)), int(m.group(2)))
        elif kernel is not None and (m := _USED.search(line)):
            smem = _SMEM.search(line)
            st, ld = spills.get(kernel, (0, 0))
            usage[kernel] = {"registers": int(m.group(1)), "smem_bytes": int(smem.group(1)) if smem else 0,
                             "spill_store_bytes": st, "spill_load_bytes": ld}
    return usage


def raw_function(source: str, entry: str):
    """A kernel of `source` ready to launch on the current device (cupy.RawModule compiles it with
    NVRTC, as the tests do without a device)."""
    import cupy as cp

    return cp.RawModule(code=source).get_function(entry)
