"""Provider claims → a nattillsyn role and units (pure; settings say which claims mean what),
and `Refused`, a sign-in refused (here, not in `oidc`, which imports this module)."""

from __future__ import annotations

from dataclasses import dataclass

from nattillsyn.settings.oidc import OidcSettings

# With several matching claim values the broadest role wins.
PRECEDENCE = ("sysadmin", "unit_manager", "evaluator", "night_staff")


def _values(claims: dict, names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        v = claims.get(name)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(str(x) for x in v if isinstance(x, str | int))
    return out


class Refused(Exception):
    """A sign-in refused: `code` for the log, Swedish and English text for the person."""

    def __init__(self, code: str, sv: str, en: str, status: int = 403, claims: dict | None = None):
        super().__init__(f"{code}: {en}")
        self.code, self.sv, self.en, self.status = code, sv, en, status
        self.claims = claims or {}


@dataclass(frozen=True)
class Mapping:
    role: str | None
    sites: frozenset[str]
    active: bool = True

    def refusal(self, claims: dict, deactivated: bool = False) -> Refused:
        if not self.active:
            return Refused(
                "deactivated",
                "Ditt konto är avstängt hos organisationens inloggningstjänst. Kontakta din chef "
                "eller IT.",
                "the identity provider marks this account inactive; it was deactivated",
                403,
                claims,
            )
        if deactivated and self.role is None:
            return Refused(
                "deactivated",
                "Du har inte längre någon roll i nattillsyn, så ditt konto har stängts av. "
                "Kontakta din chef eller IT om det är fel.",
                "no group or role maps to a nattillsyn role any more; the account was deactivated",
                403,
                claims,
            )
        if self.role is None:
            return Refused(
                "unmapped",
                "Du är inloggad hos organisationen men har ingen roll i nattillsyn. Be din chef "
                "eller IT att lägga till dig i rätt grupp.",
                "no group or role of this user maps to a nattillsyn role",
                403,
                claims,
            )
        return Refused(
            "no_unit",
            "Du har en roll i nattillsyn men ingen enhet. Be IT att koppla ditt konto till "
            "en enhet (HSA-id).",
            "no unit claim of this user maps to a nattillsyn unit",
            403,
            claims,
        )


def map_claims(s: OidcSettings, claims: dict) -> Mapping:
    """The role and units the claims give; role None when nothing maps."""
    roles = {s.role_map[v] for v in _values(claims, s.role_claims) if v in s.role_map}
    role = next((r for r in PRECEDENCE if r in roles), None)
    sites = frozenset(s.unit_map[v] for v in _values(claims, s.unit_claims) if v in s.unit_map)
    active = True
    if s.active_claim is not None and claims.get(s.active_claim) is False:
        active = False
    return Mapping(role, sites, active)


def usable(m: Mapping) -> bool:
    """A role, active, and (except a sysadmin) at least one unit."""
    return m.active and m.role is not None and (m.role == "sysadmin" or bool(m.sites))
