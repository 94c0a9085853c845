"""Signing in with a password, and who is signed in."""

from __future__ import annotations

from pydantic import Field

from .common import Body, Role


class LoginRequest(Body):
    username: str = Field(min_length=1, max_length=64, description="User name.")
    password: str = Field(min_length=1, max_length=256, description="Password.")


class Me(Body):
    username: str = Field(description="User name.")
    display_name: str = Field(description="Name shown in the app.")
    role: Role = Field(description="Role that decides what the user may see and do.")
    sites: list[str] = Field(description="Units (sites) the user belongs to.")
