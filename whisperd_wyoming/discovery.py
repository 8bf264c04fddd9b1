"""Zeroconf (mDNS) discovery for Home Assistant: `_wyoming._tcp.local.` on the LAN.

As `wyoming.zeroconf.HomeAssistantZeroconf` does (and wyoming-faster-whisper uses),
with the service unregistered on exit, so Home Assistant drops it at once.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

from whisperd_wyoming.config import Listen

log = logging.getLogger("whisperd.wyoming")

SERVICE_TYPE = "_wyoming._tcp.local."
MDNS_GROUP = "224.0.0.251"


def lan_address() -> str:
    """The address this host sends multicast from (no packet is sent: a UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((MDNS_GROUP, 1))
        return s.getsockname()[0]


def advertised_address(listen: Listen) -> str:
    """The address clients should connect to: the one listened on, or the LAN's for a wildcard."""
    if listen.host in ("0.0.0.0", "::", ""):
        return lan_address()
    try:
        return str(ipaddress.ip_address(listen.host))
    except ValueError:
        return socket.gethostbyname(listen.host)


class Advertisement:
    def __init__(self, name: str, listen: Listen) -> None:
        self.name, self.listen = name, listen
        self._zeroconf: Any = None
        self._info: Any = None

    async def start(self) -> str:
        """Register the service; returns the address advertised."""
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        address = advertised_address(self.listen)
        self._info = AsyncServiceInfo(SERVICE_TYPE, f"{self.name}.{SERVICE_TYPE}",
                                      addresses=[ipaddress.ip_address(address).packed], port=self.listen.port)
        self._zeroconf = AsyncZeroconf()
        await self._zeroconf.async_register_service(self._info)
        return address

    async def stop(self) -> None:
        if self._zeroconf is None:
            return
        try:
            # The first await queues the goodbye; the task it returns is its sending.
            await (await self._zeroconf.async_unregister_service(self._info))
        finally:
            await self._zeroconf.async_close()
            self._zeroconf = None
