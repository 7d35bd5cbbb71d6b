"""Validation and calibration against measurements on real GPUs: not built yet (a later issue).

`measurements/` is where real, dated measurement records will be committed; nothing there is invented.
"""
