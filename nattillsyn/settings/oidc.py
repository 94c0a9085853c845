"""Settings of OpenID Connect single sign-on (the municipality's identity provider)."""

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .base import Section
from .fields import ClaimNames, ProviderUrl

Role = Literal["night_staff", "unit_manager", "evaluator", "sysadmin"]


class OidcSettings(Section):
    issuer: ProviderUrl | None = Field(
        None,
        description="Issuer URL of the identity provider (its discovery document is at "
        "<issuer>/.well-known/openid-configuration); unset: single sign-on is off.",
    )
    client_id: str = Field(
        "nattillsyn",
        description="Client id registered at the provider.",
        min_length=1,
        max_length=200,
    )
    client_secret: str | None = Field(
        None,
        description="Client secret (client_secret_basic); unset: a public client (PKCE only).",
        max_length=500,
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"],
        description="Scopes requested; must include openid (add e.g. groups for group claims).",
        min_length=1,
        max_length=32,
    )
    redirect_url: ProviderUrl | None = Field(
        None,
        description="Redirect URI registered at the provider; default: this api's own "
        "<scheme>://<host>/sso/callback as the browser reached it.",
    )
    display_name: str = Field(
        "organisationens konto",
        description="What the sign-in button names (Swedish), e.g. 'Kommunens konto'.",
        min_length=1,
        max_length=80,
    )
    role_claims: ClaimNames = Field(
        default_factory=lambda: ["groups", "roles"],
        description="ID-token claims whose values (string or list) are looked up in role_map.",
    )
    role_map: dict[str, Role] = Field(
        default_factory=dict,
        description="Claim value (group id, app role, ...) → nattillsyn role; with several "
        "matches the broadest role wins (sysadmin, unit_manager, evaluator, night_staff).",
        max_length=1000,
    )
    unit_claims: ClaimNames = Field(
        default_factory=lambda: ["hsa_unit", "groups"],
        description="ID-token claims whose values (e.g. an HSA id) are looked up in unit_map.",
    )
    unit_map: dict[str, str] = Field(
        default_factory=dict,
        description="Claim value (HSA id of a unit, group id, ...) → nattillsyn unit (site) id.",
        max_length=10000,
    )
    active_claim: str | None = Field(
        None,
        description="Optional boolean claim; false deactivates the account (as does no mapped "
        "role any more).",
        max_length=100,
    )
    username_claim: str = Field(
        "preferred_username",
        description="Claim used as the user name of an account made at first sign-in.",
        min_length=1,
        max_length=100,
    )
    local_passwords: bool = Field(
        True,
        description="Allow nattillsyn's own user name + password sign-in; false: only single "
        "sign-on (and tablet PINs of staff who signed in through it this shift).",
    )
    login_timeout_s: float = Field(
        600.0,
        description="How long a started sign-in (state, nonce, PKCE verifier) stays usable (s).",
        ge=10,
        le=3600,
    )
    leeway_s: float = Field(
        60.0, description="Clock skew allowed on exp/iat/nbf of ID tokens (s).", ge=0, le=600
    )
    http_timeout_s: float = Field(
        10.0, description="Timeout of each call to the provider (s).", gt=0, le=120
    )
    metadata_ttl_s: float = Field(
        3600.0, description="How long discovery metadata and JWKS are cached (s).", ge=0, le=86400
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256"],
        description="ID-token signature algorithms accepted (never 'none' or HS*).",
        min_length=1,
        max_length=8,
    )

    @field_validator("issuer")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        loopback = ("127.0.0.1", "localhost", "::1")
        if v is not None and v.startswith("http://") and urlsplit(v).hostname not in loopback:
            raise ValueError("must be https:// (plain http only on loopback, for tests)")
        return v

    @field_validator("scopes")
    @classmethod
    def _openid(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("must include 'openid'")
        return v

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, v: list[str]) -> list[str]:
        allowed = {
            "RS256",
            "RS384",
            "RS512",
            "PS256",
            "PS384",
            "PS512",
            "ES256",
            "ES384",
            "ES512",
            "EdDSA",
        }
        bad = [a for a in v if a not in allowed]
        if bad:
            raise ValueError(f"not an asymmetric JWS algorithm: {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _sso_or_passwords(self) -> "OidcSettings":
        if not self.local_passwords and self.issuer is None:
            raise ValueError("local_passwords=false needs issuer (nobody could sign in)")
        return self

    @property
    def enabled(self) -> bool:
        return self.issuer is not None
