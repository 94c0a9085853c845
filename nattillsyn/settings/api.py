"""Settings of the api (tablet app, admin, evaluation)."""

from pydantic import Field

from .base import Section
from .fields import Port


class ApiSettings(Section):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: Port = Field(8080, description="Port to listen on; 0 picks a free one.")
    cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (off only for plain-http demos)."
    )
    session_hours: float = Field(
        12.0, description="Sign-in lifetime (h), about one night shift.", gt=0, le=168
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Other origins (scheme://host[:port]) allowed to send state-changing "
        "requests, e.g. a reverse proxy's public name; the api's own origin always is.",
        max_length=32,
    )
    login_window_s: float = Field(
        900.0, description="Window (s) in which failed sign-ins are counted.", gt=0, le=86400
    )
    login_max_failures_user: int = Field(
        5, description="Failed sign-ins per user name in the window before a pause.", ge=1, le=1000
    )
    login_max_failures_client: int = Field(
        30,
        description="Failed sign-ins per client address in the window before a pause.",
        ge=1,
        le=100000,
    )
    claim_code_hours: float = Field(
        72.0, description="How long a device claim code stays valid (h).", gt=0, le=720
    )
    device_mqtt_url: str | None = Field(
        None,
        description="Broker URL handed to devices when they claim (mqtt[s]://host:port); "
        "default: mqtt_url without credentials.",
    )
    mosquitto_dir: str | None = Field(
        None,
        description="Folder where the api writes Mosquitto's password file (passwd) and ACL "
        "file (acl) after each device change; unset: not written (use `nattillsyn mqtt-auth`).",
    )
    mosquitto_pid_file: str | None = Field(
        None, description="Mosquitto's pid file: sent SIGHUP to reload passwd/acl after a write."
    )
    mosquitto_reload_command: list[str] | None = Field(
        None,
        description="Command run after a write when the broker is elsewhere, e.g. "
        '["docker", "kill", "--signal=HUP", "mosquitto"] (argv list, no shell).',
        max_length=32,
    )
    push_interval_s: float = Field(
        30.0,
        description="Longest time between two reconciliations of device configs with "
        "monitoring_active (changes and schedule boundaries push at once).",
        ge=0.5,
        le=3600,
    )
