"""Single sign-on settings and claim mapping (pure)."""

from __future__ import annotations

import pytest

from nattillsyn.api.claims import map_claims, usable
from nattillsyn.api.oidc import pkce_challenge, safe_next
from nattillsyn.settings import OidcSettings, SettingsError, load

S = OidcSettings(
    issuer="https://idp.example",
    role_map={"g-natt": "night_staff", "g-chef": "unit_manager", "r-it": "sysadmin"},
    unit_map={"SE-1": "site-1", "g-unit-2": "site-2"},
    active_claim="active",
)


def test_claims_map_to_the_broadest_role_and_every_unit() -> None:
    m = map_claims(S, {"groups": ["g-natt", "g-chef", "g-unit-2"], "hsa_unit": "SE-1"})
    assert (m.role, m.sites, usable(m)) == ("unit_manager", {"site-1", "site-2"}, True)
    m = map_claims(S, {"roles": "r-it"})
    assert (m.role, usable(m)) == ("sysadmin", True)  # a sysadmin needs no unit


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"groups": ["other"], "hsa_unit": "SE-1"}, "unmapped"),
        ({"groups": ["g-natt"]}, "no_unit"),
        ({"groups": ["g-natt"], "hsa_unit": "SE-1", "active": False}, "deactivated"),
    ],
)
def test_unusable_claims_are_refused_with_a_reason(claims, code) -> None:
    m = map_claims(S, claims)
    assert not usable(m) and m.refusal(claims).code == code


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(SettingsError, match=r"oidc\.scopes"):
        load(oidc={"issuer": "https://idp.example", "scopes": ["profile"]})
    with pytest.raises(SettingsError, match=r"oidc\.role_map\.g"):
        load(oidc={"role_map": {"g": "boss"}})
    with pytest.raises(SettingsError, match=r"oidc\.algorithms"):
        load(oidc={"algorithms": ["HS256"]})
    with pytest.raises(SettingsError, match=r"oidc\.issuer: .*https"):
        load(oidc={"issuer": "http://idp.example"})
    with pytest.raises(SettingsError, match=r"oidc\.unknown"):
        load(oidc={"unknown": 1})
    with pytest.raises(SettingsError, match="local_passwords=false needs issuer"):
        load(oidc={"local_passwords": False})


def test_pkce_and_next() -> None:
    # RFC 7636 appendix B
    assert (
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    assert safe_next("/admin") == "/admin"
    assert safe_next("https://evil.example/") == "/" and safe_next("//evil") == "/"
