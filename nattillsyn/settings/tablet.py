"""Settings of the shared night-staff tablets: staff PIN sign-in, quick switch, auto-lock."""

from pydantic import Field

from .base import Section


class TabletSettings(Section):
    auto_lock_s: float = Field(
        300.0,
        description="Lock the tablet after this long without a touch (s); alerts still sound "
        "on the lock screen, staff sign in again with their PIN.",
        ge=5,
        le=4 * 3600,
    )
    pin_session_s: float = Field(
        900.0,
        description="A PIN session ends on the server after this long without activity (s); "
        "activity extends it (the server side of the auto-lock).",
        ge=30,
        le=12 * 3600,
    )
    pin_min_length: int = Field(4, description="Shortest PIN.", ge=4, le=12)
    pin_max_failures: int = Field(
        5, description="Wrong PINs for one staff member within the window before a lockout.", ge=1
    )
    tablet_max_failures: int = Field(
        20, description="Wrong PINs on one tablet within the window before a lockout.", ge=1
    )
    pin_window_s: float = Field(
        900.0, description="Window for counting wrong PINs, and the lockout length (s).", gt=0
    )
    enrollment_code_ttl_s: float = Field(
        900.0, description="How long a tablet enrollment code stays valid (s).", ge=60, le=86400
    )
    cookie_days: float = Field(
        365.0, description="Lifetime of the tablet's enrollment cookie (days).", gt=0, le=3650
    )
