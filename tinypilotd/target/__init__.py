"""A virtual target computer for running the device without hardware."""
