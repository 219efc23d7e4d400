"""tinypilotd: the TinyPilot REST API daemon for a KVM-over-IP device."""

__version__ = "0.1.0"
