"""Risk presets and per-resident rule overrides: which observations alert, how loudly, when.

The administration UI lets a unit manager pick a preset for a resident
(`residents.risk_preset`) and change single rules (`residents.rule_overrides`, JSON
validated by `RuleOverrides`). Alerting combines both with `effective_rules`.

Only resident rules are configurable here. System alerts (device offline, camera
covered, …) protect the reserve routine and cannot be turned off per resident; their
timing lives in the alerting settings.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from nattillsyn.protocol import AlertPriority

MAX_DELAY_S = 4 * 3600


class RuleKind(StrEnum):
    """Everything alerting can raise; the first group is configurable per resident."""

    possible_fall = "possible_fall"
    on_floor = "on_floor"
    out_of_bed = "out_of_bed"
    in_bathroom = "in_bathroom"
    no_motion = "no_motion"
    left_room = "left_room"
    # System alerts: digital tillsyn is not available, a physical check is needed.
    device_offline = "device_offline"
    camera_covered = "camera_covered"
    camera_moved = "camera_moved"
    too_dark = "too_dark"
    edge_backlog = "edge_backlog"
    device_paused = "device_paused"
    # Raised by a unit manager for training; never counted.
    practice = "practice"


RESIDENT_RULES: tuple[RuleKind, ...] = (
    RuleKind.possible_fall,
    RuleKind.on_floor,
    RuleKind.out_of_bed,
    RuleKind.in_bathroom,
    RuleKind.no_motion,
    RuleKind.left_room,
)
SYSTEM_RULES: tuple[RuleKind, ...] = (
    RuleKind.device_offline,
    RuleKind.camera_covered,
    RuleKind.camera_moved,
    RuleKind.too_dark,
    RuleKind.edge_backlog,
    RuleKind.device_paused,
)

ResidentRuleKind = Literal[
    "possible_fall", "on_floor", "out_of_bed", "in_bathroom", "no_motion", "left_room"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hours(_Model):
    """A daily window in the unit's local time; `start` > `end` wraps midnight, equal = all day."""

    start: time = Field(description="Local time the window opens, e.g. 22:00.")
    end: time = Field(description="Local time the window closes, e.g. 06:00.")

    def contains(self, t: time) -> bool:
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Rule(_Model):
    """One effective rule of a resident."""

    enabled: bool = Field(description="Whether this rule raises alerts at all.")
    priority: AlertPriority = Field(description="high / medium / low / info (IEC 60601-1-8).")
    delay_s: int = Field(
        ge=0,
        le=MAX_DELAY_S,
        description="The condition must hold this long before the alert (s); 0 = at once.",
    )
    hours: Hours | None = Field(
        None, description="Only inside this daily window; none = whenever monitoring is active."
    )


class RuleOverride(_Model):
    """Changes to one rule of the preset; fields left out keep the preset's value."""

    enabled: bool | None = Field(None, description="Turn the rule on or off.")
    priority: AlertPriority | None = Field(None, description="Another priority.")
    delay_s: int | None = Field(None, ge=0, le=MAX_DELAY_S, description="Another delay (s).")
    hours: Hours | Literal["always"] | None = Field(
        None, description='Another daily window, or "always" for the whole monitoring window.'
    )

    def apply(self, rule: Rule) -> Rule:
        update: dict[str, Any] = self.model_dump(
            include={"enabled", "priority", "delay_s"}, exclude_none=True
        )
        if self.hours == "always":
            update["hours"] = None
        elif self.hours is not None:
            update["hours"] = self.hours
        return rule.model_copy(update=update)


class RuleOverrides(RootModel[dict[ResidentRuleKind, RuleOverride]]):
    """`residents.rule_overrides`: `{"out_of_bed": {"delay_s": 300}, "left_room": {"enabled": false}}`."""

    root: dict[ResidentRuleKind, RuleOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fall_stays_on(self) -> RuleOverrides:
        fall = self.root.get("possible_fall")
        if fall is not None and fall.enabled is False:
            raise ValueError("possible_fall cannot be turned off while monitoring is active")
        return self


PresetName = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]


class RiskPreset(_Model):
    name: PresetName = Field(description="Id stored in residents.risk_preset.")
    label_sv: str = Field(description="Name shown to managers (Swedish).")
    label_en: str = Field(description="Name shown to managers (English).")
    description_sv: str = Field(description="When to choose it (Swedish).")
    description_en: str = Field(description="When to choose it (English).")
    rules: dict[ResidentRuleKind, Rule] = Field(description="Every resident rule.")


NIGHT = Hours(start=time(22, 0), end=time(6, 0))
_H, _M, _L, _I = AlertPriority.high, AlertPriority.medium, AlertPriority.low, AlertPriority.info


def _r(priority: AlertPriority, delay_s: int, hours: Hours | None = None, on: bool = True) -> Rule:
    return Rule(enabled=on, priority=priority, delay_s=delay_s, hours=hours)


# The presets side by side, one column each in the order of _PRESET_TEXTS (standard,
# fall_risk, wandering, low): priority, delay (s), daily window, on/off.
_PRESET_RULES: dict[ResidentRuleKind, tuple[Rule, ...]] = {
    "possible_fall": (_r(_H, 0),          _r(_H, 0),          _r(_H, 0),    _r(_H, 0)),
    "on_floor":      (_r(_H, 60),         _r(_H, 30),         _r(_H, 60),   _r(_H, 120)),
    "out_of_bed":    (_r(_M, 600),        _r(_M, 60),         _r(_M, 300),  _r(_L, 1800, on=False)),
    "in_bathroom":   (_r(_M, 1200),       _r(_M, 900),        _r(_M, 1200), _r(_L, 1800)),
    "no_motion":     (_r(_M, 900),        _r(_H, 600),        _r(_M, 900),  _r(_M, 1800)),
    "left_room":     (_r(_M, 300, NIGHT), _r(_M, 120, NIGHT), _r(_H, 0),    _r(_I, 600, NIGHT)),
}  # fmt: skip
# What managers read: label (sv, en), when to choose it (sv, en).
_TEXT_FIELDS = ("label_sv", "label_en", "description_sv", "description_en")
_PRESET_TEXTS = {
    "standard": (
        "Standard",
        "Standard",
        "Möjligt fall direkt; ur sängen 10 min, badrum 20 min, ingen rörelse 15 min, lämnat "
        "rummet nattetid 5 min.",
        "Possible fall at once; out of bed 10 min, bathroom 20 min, no motion 15 min, left the "
        "room at night 5 min.",
    ),
    "fall_risk": (
        "Fallrisk",
        "Fall risk",
        "För den som ofta faller: larm när personen lämnar sängen (1 min), kortare tider för "
        "badrum och stillhet.",
        "For residents who fall often: alert when leaving the bed (1 min), shorter times for "
        "bathroom and stillness.",
    ),
    "wandering": (
        "Vandringsrisk",
        "Wandering risk",
        "För personer med demens som kan gå vilse: larm direkt när rummet lämnas under "
        "övervakningen.",
        "For residents with dementia who may get lost: alert at once when the room is left "
        "during monitoring.",
    ),
    "low": (
        "Låg risk",
        "Low risk",
        "Självständig nattetid: bara fall, golv och lång stillhet larmar; att lämna rummet "
        "visas som information.",
        "Independent at night: only falls, floor and long stillness alert; leaving the room "
        "is shown as information.",
    ),
}
PRESETS: dict[str, RiskPreset] = {
    name: RiskPreset(
        name=name,
        **dict(zip(_TEXT_FIELDS, texts, strict=True)),
        rules={kind: column[i] for kind, column in _PRESET_RULES.items()},
    )
    for i, (name, texts) in enumerate(_PRESET_TEXTS.items())
}
DEFAULT_PRESET = "standard"


class UnknownPreset(ValueError):
    pass


def preset(name: str) -> RiskPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPreset(f"unknown risk preset {name!r}; one of {sorted(PRESETS)}") from None


def effective_rules(
    preset_name: str, overrides: RuleOverrides | dict | None = None
) -> dict[RuleKind, Rule]:
    """The resident's rules: the preset with the overrides applied.

    An unknown preset falls back to the default one rather than silencing a resident; the
    admin UI validates with `preset()` and `RuleOverrides` before storing.
    """
    base = PRESETS.get(preset_name) or PRESETS[DEFAULT_PRESET]
    ov = (
        overrides
        if isinstance(overrides, RuleOverrides)
        else RuleOverrides.model_validate(overrides or {})
    )
    out: dict[RuleKind, Rule] = {}
    for kind, rule in base.rules.items():
        change = ov.root.get(kind)  # type: ignore[call-overload]
        out[RuleKind(kind)] = change.apply(rule) if change else rule
    return out


def catalog() -> dict:
    """Presets and the JSON schema of the overrides, for the admin UI."""
    return {
        "default": DEFAULT_PRESET,
        "presets": [p.model_dump(mode="json") for p in PRESETS.values()],
        "overrides_schema": RuleOverrides.model_json_schema(),
        "resident_rules": [k.value for k in RESIDENT_RULES],
    }


__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "RESIDENT_RULES",
    "SYSTEM_RULES",
    "Hours",
    "RiskPreset",
    "Rule",
    "RuleKind",
    "RuleOverride",
    "RuleOverrides",
    "UnknownPreset",
    "catalog",
    "effective_rules",
    "preset",
]
