from twisted.application.service import ServiceMaker

tinypilot = ServiceMaker(
    "tinypilot",
    "tinypilotd.tap",
    "The TinyPilot REST API daemon for a KVM-over-IP device.",
    "tinypilot",
)
