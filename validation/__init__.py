"""Validation and calibration against measurements on real GPUs (calibration: a later issue).

`published.py` reads the published FlashAttention reference set; `records.py` appends measurement
records (JSON Lines) as the GPU benchmark scripts write them. `measurements/` is where real, dated
measurement records are committed; nothing there is invented.
"""
