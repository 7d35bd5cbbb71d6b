"""The analytical model of attention kernels: hardware, workloads, masks, tiles, bound and prediction.

Imports numpy only (never torch, triton or cupy), so it installs and runs on a CPU-only machine.
"""
