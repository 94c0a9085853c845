"""Evaluation: units to evaluate and baseline imports.

The report itself is defined once, in nattillsyn.evaluation.model; re-exported here.
"""

from __future__ import annotations

import uuid
from datetime import date as datetime_date
from datetime import datetime

from pydantic import Field

from nattillsyn.evaluation.model import BaselineImportResult as BaselineImportResult
from nattillsyn.evaluation.model import Report as Report

from .common import Body


class UnitRef(Body):
    site: str = Field(description="Unit (site) id.")
    name: str = Field(description="Unit name.")


class UnitList(Body):
    units: list[UnitRef] = Field(description="Units the signed-in user may evaluate.")


class BaselineUpload(Body):
    csv: str = Field(
        min_length=1,
        max_length=900_000,
        description="The baseline file's text in the documented CSV format (docs/evaluation.md).",
    )
    source: str | None = Field(None, max_length=200, description="File name, for the record.")


class BaselineImport(Body):
    id: uuid.UUID = Field(description="Import id.")
    imported_at: datetime = Field(description="When it was imported.")
    imported_by: str = Field(description="Who imported it.")
    source: str | None = Field(None, description="File name given.")
    rows: int = Field(description="Rows in the import.")


class BaselineOverview(Body):
    site: str = Field(description="Unit id.")
    first_night: datetime_date | None = Field(None, description="First baseline night stored.")
    last_night: datetime_date | None = Field(None, description="Last baseline night stored.")
    nights: int = Field(description="Resident-nights stored.")
    imports: list[BaselineImport] = Field(description="Imports, newest first.")
