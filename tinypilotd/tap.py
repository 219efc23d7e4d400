"""
C{twistd tinypilot}: command-line options and the service tree.

    twistd [-n] tinypilot [--config FILE] [--listen ENDPOINT]...
        [--state-dir DIR] [--keyboard PATH] [--mouse PATH] [--video-command CMD]

Command-line options win over the TOML file given with C{--config}; the file
wins over the built-in defaults (those of a device: C{ssl:443}, C{/dev/hidg0},
C{/dev/hidg1}, C{/var/lib/tinypilot}).
"""

import os
import shlex
import shutil
import signal
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.logger import Logger
from twisted.python import usage

import tinypilotd
from tinypilotd import config as _config


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve the TinyPilot REST API over TLS: keystrokes and mouse events "
        "to the USB HID gadget devices, pasted text as keystrokes, and "
        "screenshots from the capture pipeline."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (etc/tinypilot.toml documents every key)."],
        ["state-dir", None, None, "Directory for TLS material and the licence [default: /var/lib/tinypilot]."],
        ["keyboard", None, None, "Keyboard HID gadget device [default: /dev/hidg0]."],
        ["mouse", None, None, "Absolute mouse HID gadget device [default: /dev/hidg1]."],
        ["video-command", None, None, "Capture pipeline writing MJPEG to stdout (split like a shell, run without one)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self.config = _config.Config()

    def opt_listen(self, endpoint: str) -> None:
        """
        Listen on a Twisted endpoint string; repeatable [default: ssl:443].
        An ssl: endpoint that names no privateKey uses the generated
        certificate; tcp: serves plain HTTP for use behind a TLS proxy.
        """
        self["listen"].append(endpoint)

    def postOptions(self) -> None:
        try:
            config = _config.load(self["config"])
        except _config.ConfigError as e:
            raise usage.UsageError(str(e)) from None
        config = _config.override(
            config,
            daemon={
                k: v
                for k, v in [("listen", tuple(self["listen"])), ("state_dir", self["state-dir"])]
                if v
            },
            hid={k: v for k, v in [("keyboard", self["keyboard"]), ("mouse", self["mouse"])] if v},
            video={"command": self["video-command"]} if self["video-command"] is not None else {},
        )
        for endpoint in config.daemon.listen:
            if "sslmethod=" in endpoint:
                raise usage.UsageError(
                    f"--listen {endpoint}: sslmethod is not supported; the daemon always uses TLS 1.2 or newer"
                )
        try:
            shlex.split(config.video.command)
        except ValueError as e:
            raise usage.UsageError(f"video.command cannot be split into arguments: {e}") from None
        self.config = config


def resolveEndpoint(description: str, serverCert: str, serverKey: str) -> str:
    """
    Give an C{ssl:} endpoint string that names no key our generated
    certificate; leave everything else as it is.
    """
    if description.startswith("ssl:") and "privateKey=" not in description:
        return (
            f"{description}:privateKey={quoteStringArgument(serverKey)}"
            f":certKey={quoteStringArgument(serverCert)}"
        )
    return description


def resolveCommand(argv: list[str]) -> list[str]:
    """
    Look a bare command name up on C{PATH}, then beside the daemon's own
    Python, so that console scripts installed with the daemon (the virtual
    target) run without an activated virtualenv.
    """
    if not argv or os.sep in argv[0]:
        return argv
    found = shutil.which(argv[0]) or shutil.which(argv[0], path=os.path.dirname(sys.executable))
    return [found or argv[0], *argv[1:]]


def isPlaintext(description: str) -> bool:
    return description.split(":", 1)[0] in ("tcp", "tcp6", "unix", "systemd")


class _Announce(Service):
    """
    Logs the start line once every other service has started.
    """

    log = Logger()

    def __init__(self, **facts: object) -> None:
        self._facts = facts

    def startService(self) -> None:
        super().startService()
        facts = self._facts
        self.log.info(
            "tinypilotd {version} serving the REST API on {listen}; CA fingerprint "
            "(SHA-256) {fingerprint}; keyboard {keyboard}, mouse {mouse}; video "
            "{video}; Automation Licence {licence}",
            version=tinypilotd.__version__,
            **facts,
        )
        for endpoint in facts["plaintext"]:  # type: ignore[attr-defined]
            self.log.warn(
                "{endpoint} serves plain HTTP: use it only behind a TLS-terminating proxy on this device",
                endpoint=endpoint,
            )


class _ExitZeroOnSIGTERM(Service):
    """
    SIGTERM is how systemd and operators ask the daemon to stop; once every
    service has stopped cleanly that is a success, so exit 0 rather than
    re-raising the signal as twistd does by default.  (The reactor records
    the signal in C{_exitSignal}, its documented
    C{_ISupportsExitSignalCapturing} attribute.)
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def stopService(self) -> None:
        super().stopService()
        if getattr(self._reactor, "_exitSignal", None) == signal.SIGTERM:
            self._reactor._exitSignal = None


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the daemon: the HID devices, the capture pipeline and one listening
    service per C{--listen} endpoint, under one C{MultiService}.  Services
    stop in reverse order: listeners first, then the capture child, then the
    HID devices (which release every key last).
    """
    if reactor is None:
        from twisted.internet import reactor

    from tinypilotd.api.app import TinyPilotAPI
    from tinypilotd.api.site import TinyPilotSite
    from tinypilotd.api.tokens import TokenStore
    from tinypilotd.hid.keyboard import Keyboard
    from tinypilotd.hid.mouse import Mouse
    from tinypilotd.security.license import LicenseState, readDeviceId
    from tinypilotd.security.tls import ensureTLS
    from tinypilotd.video.cache import FrameCache
    from tinypilotd.video.capture import CaptureService

    config = options.config
    tls = ensureTLS(config.daemon.state_dir)
    licence = LicenseState(
        config.daemon.state_dir,
        config.license.public_keys,
        readDeviceId(config.license.device_id_file),
        config.license.required,
    )
    root = MultiService()
    _ExitZeroOnSIGTERM(reactor).setServiceParent(root)

    keyboard = Keyboard(
        config.hid.keyboard,
        write_timeout=config.hid.write_timeout,
        report_interval=config.paste.report_interval_ms / 1000.0,
        leds_path=config.hid.keyboard_leds or None,
        reactor=reactor,
    )
    keyboard.setServiceParent(root)
    mouse = Mouse(config.hid.mouse, write_timeout=config.hid.write_timeout, reactor=reactor)
    mouse.setServiceParent(root)

    frames = FrameCache(stale_after=config.video.stale_after, clock=reactor)
    argv = resolveCommand(shlex.split(config.video.command))
    if argv:
        CaptureService(
            argv,
            frames,
            reactor=reactor,
            min_restart_delay=config.video.min_restart_delay,
            max_restart_delay=config.video.max_restart_delay,
            kill_grace=1.0,
        ).setServiceParent(root)

    api = TinyPilotAPI(
        tokens=TokenStore(config.auth.max_tokens),
        licence=licence,
        passwordRequired=config.auth.password_required,
        keyboard=keyboard,
        mouse=mouse,
        frames=frames,
        caPEM=tls.ca_pem,
    )
    site = TinyPilotSite(api.resource())
    site.displayTracebacks = False
    for description in config.daemon.listen:
        endpoint = serverFromString(reactor, resolveEndpoint(description, tls.server_cert, tls.server_key))
        StreamServerEndpointService(endpoint, site).setServiceParent(root)

    _Announce(
        listen=", ".join(config.daemon.listen),
        plaintext=[d for d in config.daemon.listen if isPlaintext(d)],
        fingerprint=tls.ca_fingerprint,
        keyboard=config.hid.keyboard,
        mouse=config.hid.mouse,
        video=f"pipeline {os.path.basename(argv[0])}" if argv else "off (no video.command)",
        licence=licence.describe() if not config.auth.password_required else "unused (password mode)",
    ).setServiceParent(root)
    if tls.renewed:
        Logger().info(
            "made a new server certificate in {path}, valid until {until}",
            path=os.path.dirname(tls.server_cert),
            until=tls.server_not_after.date().isoformat(),
        )
    return root
