"""Shipped hardware profiles (YAML data, one file per device); read by attnsim.simulator.hardware."""
