"""Settings of the api (tablet app, admin, evaluation)."""

from pydantic import Field

from .base import Section


class ApiSettings(Section):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, description="Port to listen on; 0 picks a free one.", ge=0, le=65535)
    cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (off only for plain-http demos)."
    )
    session_hours: float = Field(
        12.0, description="Sign-in lifetime (h), about one night shift.", gt=0, le=168
    )
