"""The SSRF guard refuses every IPv6 form that carries a non-public IPv4 address (pure).

Each form the guard unwraps (IPv4-mapped, NAT64 64:ff9b::/96, 6to4
2002::/16) is checked with non-public embedded addresses, which must be
refused, and with public ones, which must pass. Teredo and the deprecated
IPv4-compatible form are refused whatever they carry. No address here is ever
contacted: ``check_address`` is the decision the transport applies to the
exact address it then connects to.
"""

from __future__ import annotations

import ipaddress

import pytest

from syndicate.webhooks.guard import BlockedDestination, Guard, embedded_ipv4, refusal_reason

NON_PUBLIC = {
    "10.1.2.3": "private",
    "172.16.5.4": "private",
    "192.168.0.10": "private",
    "127.0.0.1": "loopback",
    "169.254.169.254": "metadata",
    "169.254.10.20": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "0.0.0.0": "unspecified",
}
PUBLIC = ["8.8.8.8", "93.184.216.34", "1.1.1.1"]


def mapped(v4: str) -> str:
    return f"::ffff:{v4}"


def nat64(v4: str) -> str:
    return f"64:ff9b::{v4}"


def sixtofour(v4: str) -> str:
    packed = int(ipaddress.IPv4Address(v4))
    return f"2002:{packed >> 16:04x}:{packed & 0xFFFF:04x}::1"


UNWRAPPED = {"IPv4-mapped": mapped, "NAT64": nat64, "6to4": sixtofour}


@pytest.mark.parametrize("form", UNWRAPPED)
@pytest.mark.parametrize("inner", NON_PUBLIC)
def test_each_unwrapped_form_of_a_non_public_ipv4_is_refused(form, inner):
    address = UNWRAPPED[form](inner)
    assert embedded_ipv4(ipaddress.ip_address(address)) == ipaddress.IPv4Address(inner)
    with pytest.raises(BlockedDestination) as refused:
        Guard().check_address("partner.example", address)
    # The reason names the IPv4 address the form carries, so an operator sees what was meant.
    assert inner in refused.value.message


@pytest.mark.parametrize("form", UNWRAPPED)
@pytest.mark.parametrize("inner", PUBLIC)
def test_each_unwrapped_form_of_a_public_ipv4_is_allowed(form, inner):
    address = UNWRAPPED[form](inner)
    assert Guard().check_address("partner.example", address) == ipaddress.ip_address(address)


@pytest.mark.parametrize("inner", [*NON_PUBLIC, *PUBLIC])
def test_plain_ipv4_agrees_with_its_ipv6_forms(inner):
    public = inner in PUBLIC
    for form in UNWRAPPED.values():
        for address in (inner, form(inner)):
            if public:
                Guard().check_address("partner.example", address)
            else:
                with pytest.raises(BlockedDestination):
                    Guard().check_address("partner.example", address)


def teredo(server: str, client: str) -> str:
    # RFC 4380: 2001:0000:server:flags:port:client, port and client XOR-obfuscated.
    s = int(ipaddress.IPv4Address(server))
    c = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return f"2001:0:{s >> 16:04x}:{s & 0xFFFF:04x}:0:f7f7:{c >> 16:04x}:{c & 0xFFFF:04x}"


@pytest.mark.parametrize("inner", ["10.0.0.1", "127.0.0.1", "169.254.169.254", *PUBLIC])
def test_teredo_and_ipv4_compatible_forms_are_refused_whatever_they_carry(inner):
    address = teredo("65.54.227.120", inner)
    assert ipaddress.ip_address(address).teredo[1] == ipaddress.IPv4Address(inner)
    with pytest.raises(BlockedDestination, match="Teredo"):
        Guard().check_address("partner.example", address)
    compatible = f"::{inner}"
    with pytest.raises(BlockedDestination, match="IPv4-compatible"):
        Guard().check_address("partner.example", compatible)


def test_an_allowed_network_lets_its_ipv6_forms_through_and_nothing_else():
    guard = Guard.of(["127.0.0.0/8"])
    for form in UNWRAPPED.values():
        guard.check_address("localhost", form("127.0.0.1"))
        with pytest.raises(BlockedDestination):
            guard.check_address("localhost", form("10.0.0.1"))
    with pytest.raises(BlockedDestination):
        guard.check_address("localhost", "::127.0.0.1")  # the deprecated form is not unwrapped


@pytest.mark.parametrize("address", ["::1", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "::"])
def test_native_ipv6_non_public_addresses_are_refused(address):
    with pytest.raises(BlockedDestination):
        Guard().check_address("partner.example", address)


@pytest.mark.parametrize("literal", ["192.0.0.8", "192.0.0.9", "192.88.99.1", "198.18.0.1", "2001:db8::1", "100::1"])
def test_special_purpose_addresses_are_refused_whatever_the_python_patch_level(literal):
    # The standard library's tables changed between patch releases (192.0.0.8/9 were global on 3.11.7).
    assert refusal_reason(ipaddress.ip_address(literal)) is not None
