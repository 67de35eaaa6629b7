"""The SSRF policy for partner URLs (pure).

A partner URL is checked twice: its form when it is registered and before each
attempt (scheme, host, https-only), and every address its host resolves to at
connection time (``transport`` calls ``check_address`` after DNS, on the exact
address it then connects to, so a name that rebinds between checks cannot
reach an internal service).

Refused unless an allowed network (SYNDICATE_WEBHOOK_ALLOW_NETWORKS) contains
the address: loopback, private (RFC 1918), link-local (169.254.0.0/16, the
cloud metadata endpoint among them), CGNAT (100.64.0.0/10), multicast,
reserved and unspecified addresses, IPv6 unique-local and link-local, and the
IPv4 address inside IPv4-mapped, NAT64 and 6to4 forms. Teredo (2001::/32) and
the deprecated IPv4-compatible form (::a.b.c.d) are refused whatever they
carry: no partner needs them, and a relay or an old stack could route them
to the embedded address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..errors import ConfigError, DeliveryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TEREDO = ipaddress.ip_network("2001::/32")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# IANA's special-purpose registries (RFC 6890 and later), written out: the standard library's
# is_private/is_global tables changed between Python patch releases (192.0.0.8/9 were global on
# 3.11.7), and what the guard refuses must not depend on the patch level.
_SPECIAL_PURPOSE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
))
_ALLOW_HINT = "add its network to SYNDICATE_WEBHOOK_ALLOW_NETWORKS only if this partner really lives there"


class BlockedDestination(DeliveryError):
    """The guard refused a URL or an address; nothing was sent."""

    code = "blocked_destination"


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination; None when it is."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = refusal_reason(inner)
        return f"an IPv6 form of {inner}, which is {reason}" if reason else None
    if address in _METADATA:
        return "the cloud metadata endpoint (link-local)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address in _TEREDO:
        return "a Teredo tunnel address"
    if isinstance(address, ipaddress.IPv6Address) and address in _IPV4_COMPATIBLE:
        return "an IPv4-compatible IPv6 address (deprecated)"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "an IPv6 unique-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if any(address in network for network in _SPECIAL_PURPOSE if network.version == address.version):
        return "a special-purpose address (not a public destination)"
    if not address.is_global:
        return "not a globally routable address"
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"SYNDICATE_WEBHOOK_ALLOW_NETWORKS entry {value!r} is not a network; use CIDR such as 10.1.0.0/16"
            ) from None
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Guard:
    """What may be reached. Hashable, so the transport keeps one session per guard."""

    allow: tuple[IPNetwork, ...] = ()
    https_only: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> "Guard":
        return cls(parse_networks(getattr(settings, "webhook_allow_networks")), bool(getattr(settings, "webhook_https_only")))

    @classmethod
    def of(cls, allow: Iterable[str] = (), https_only: bool = False) -> "Guard":
        return cls(parse_networks(allow), https_only)

    def allowed(self, address: IPAddress) -> bool:
        forms = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            forms.append(inner)
        return any(form.version == net.version and form in net for form in forms for net in self.allow)

    def check_url(self, url: str) -> None:
        """Refuse a URL whose form is wrong before anything is resolved."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BlockedDestination(f"refused {url!r}: only http and https URLs can receive webhooks")
        if self.https_only and parts.scheme != "https":
            raise BlockedDestination(
                f"refused {url!r}: SYNDICATE_WEBHOOK_HTTPS_ONLY is on; give the partner an https:// URL"
            )
        if not parts.hostname:
            raise BlockedDestination(f"refused {url!r}: the URL has no host")
        if parts.username or parts.password:
            raise BlockedDestination(f"refused {url!r}: credentials in the URL would be sent in clear; use extra headers")

    def check_address(self, host: str, address: str | IPAddress) -> IPAddress:
        """Return the address when it may be reached; raise BlockedDestination with the reason otherwise."""
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
        if self.allowed(ip):
            return ip
        reason = refusal_reason(ip)
        if reason is None:
            return ip
        shown = f"{ip}" if host == str(ip) else f"{ip} (resolved from {host})"
        raise BlockedDestination(f"refused {shown}: it is {reason}; {_ALLOW_HINT}", host=host, address=str(ip))
