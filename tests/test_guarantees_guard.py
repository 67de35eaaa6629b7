"""The SSRF guard, form by form: what a partner URL can reach, and what an operator is told.

Each test here fails on a small break of ``webhooks/guard.py`` (a mutant) that
the rest of the fast suite lets through.
"""

from __future__ import annotations

import ipaddress

import pytest

from syndicate import config
from syndicate.errors import ConfigError
from syndicate.webhooks.guard import BlockedDestination, Guard, refusal_reason

# 6to4 (2002::/16) embeds an IPv4 address in bits 16..48: 2002:AABB:CCDD:: carries A.B.C.D.
SIX_TO_FOUR = {
    "127.0.0.1": "2002:7f00:1::1",
    "169.254.169.254": "2002:a9fe:a9fe::1",
    "10.0.0.1": "2002:a00:1::1",
    "192.168.1.1": "2002:c0a8:101::1",
}


@pytest.mark.parametrize("inner,address", sorted(SIX_TO_FOUR.items()))
def test_6to4_form_of_an_internal_address_is_refused_and_named(inner, address):
    # Python counts 2002::/16 itself as global, so only unwrapping the IPv4 inside refuses these.
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_address("rebind.example", address)
    assert f"an IPv6 form of {inner}" in caught.value.message


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])
def test_ipv6_forms_of_a_public_address_are_let_through(address):
    assert Guard().check_address("partner.example", address) == ipaddress.ip_address(address)


def test_allowlist_covers_the_6to4_form_of_an_allowed_address():
    guard = Guard.of(["127.0.0.0/8"])
    assert guard.check_address("localhost", "2002:7f00:1::1") == ipaddress.ip_address("2002:7f00:1::1")
    with pytest.raises(BlockedDestination):
        guard.check_address("localhost", SIX_TO_FOUR["10.0.0.1"])


@pytest.mark.parametrize("address,reason", [
    ("169.254.169.254", "the cloud metadata endpoint (link-local)"),
    ("127.0.0.1", "a loopback address"),
    ("::", "the unspecified address"),
    ("169.254.1.1", "a link-local address"),
    ("239.1.1.1", "a multicast address"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo tunnel address"),
    ("::8.8.8.8", "an IPv4-compatible IPv6 address (deprecated)"),
    ("100.64.0.1", "a carrier-grade NAT address (100.64.0.0/10)"),
    ("fd00::1", "an IPv6 unique-local address"),
    ("240.0.0.1", "a reserved address"),
    ("192.168.0.1", "a private address"),
])
def test_refusal_tells_the_operator_what_the_address_is(address, reason):
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_address("partner.example", address)
    assert f": it is {reason}; add its network to SYNDICATE_WEBHOOK_ALLOW_NETWORKS" in caught.value.message


def test_refusal_names_the_address_the_host_resolved_to():
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_address("partner.example", "10.0.0.7")
    assert caught.value.message.startswith("refused 10.0.0.7 (resolved from partner.example): it is a private address")
    # The API and the delivery record show the error's context as fields.
    assert caught.value.as_dict()["host"] == "partner.example"
    assert caught.value.as_dict()["address"] == "10.0.0.7"


def test_refusal_of_a_literal_address_does_not_repeat_it():
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_address("10.0.0.7", "10.0.0.7")
    assert caught.value.message.startswith("refused 10.0.0.7: it is a private address")


def test_checked_address_is_the_plain_address_the_transport_connects_to():
    # getaddrinfo can append a zone index; the transport connects to str(returned address).
    checked = Guard().check_address("partner.example", "2606:4700:4700::1111%eth0")
    assert checked == ipaddress.ip_address("2606:4700:4700::1111")
    assert str(checked) == "2606:4700:4700::1111"
    with pytest.raises(BlockedDestination, match="link-local"):
        Guard().check_address("partner.example", "fe80::1%eth0")


def test_address_objects_are_checked_like_strings():
    assert Guard().check_address("partner.example", ipaddress.ip_address("8.8.8.8")) == ipaddress.ip_address("8.8.8.8")
    with pytest.raises(BlockedDestination):
        Guard().check_address("partner.example", ipaddress.ip_address("127.0.0.1"))


def test_plain_http_is_accepted_unless_https_only():
    Guard().check_url("http://partner.example/hook")
    Guard.of(["127.0.0.0/8"]).check_url("http://127.0.0.1:8080/hook")
    with pytest.raises(BlockedDestination, match="SYNDICATE_WEBHOOK_HTTPS_ONLY"):
        Guard.of([], https_only=True).check_url("http://partner.example/hook")


@pytest.mark.parametrize("url,says", [
    ("ftp://partner.example/", "only http and https"),
    ("http:///hook", "no host"),
    ("https://user:pw@partner.example/", "credentials"),
    ("https://token@partner.example/", "credentials"),  # a user name alone is a secret in clear too
    ("https://:pw@partner.example/", "credentials"),
])
def test_url_refusals_say_what_is_wrong(url, says):
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_url(url)
    assert says in caught.value.message
    assert url in caught.value.message


def test_allowlist_accepts_cidr_with_host_bits_and_names_a_bad_entry():
    # Operators write the address they know with its prefix; it means the network.
    assert Guard.of(["10.1.2.3/16"]).allow == (ipaddress.ip_network("10.1.0.0/16"),)
    with pytest.raises(ConfigError) as caught:
        Guard.of(["10.1.0.0/16", "intranet"])
    assert "'intranet'" in caught.value.message and "SYNDICATE_WEBHOOK_ALLOW_NETWORKS" in caught.value.message


def test_guard_from_settings_reads_allowlist_and_https_only(monkeypatch):
    monkeypatch.setenv("SYNDICATE_WEBHOOK_ALLOW_NETWORKS", "10.9.0.0/16, fd00::/8")
    monkeypatch.setenv("SYNDICATE_WEBHOOK_HTTPS_ONLY", "true")
    guard = Guard.from_settings(config.load_settings())
    assert guard.allow == (ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_network("fd00::/8"))
    assert guard.https_only is True
    assert guard.check_address("h", "10.9.1.1") == ipaddress.ip_address("10.9.1.1")
    with pytest.raises(BlockedDestination):
        guard.check_url("http://partner.example/")


def test_guard_from_default_settings_allows_nothing_internal_and_plain_http(monkeypatch):
    monkeypatch.delenv("SYNDICATE_WEBHOOK_ALLOW_NETWORKS", raising=False)
    monkeypatch.delenv("SYNDICATE_WEBHOOK_HTTPS_ONLY", raising=False)
    guard = Guard.from_settings(config.load_settings())
    assert guard == Guard((), False)
    guard.check_url("http://partner.example/")
    with pytest.raises(BlockedDestination):
        guard.check_address("h", "127.0.0.1")


@pytest.mark.parametrize("literal", ["192.0.0.8", "192.0.0.9", "192.31.196.1", "192.52.193.1", "192.175.48.1", "3fff::1"])
def test_special_purpose_ranges_are_refused_by_name_whatever_the_patch_level(literal):
    # IANA's special-purpose registries are written out in the guard: the standard library's
    # tables differ between patch releases (192.0.0.8/9 were global on 3.11.7).
    assert refusal_reason(ipaddress.ip_address(literal)) == "a special-purpose address (not a public destination)"
