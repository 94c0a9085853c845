"""The HTTP contract: request and response bodies of the api (OpenAPI is built from these).

One module per area. This package re-exports each module's public names, so
`from nattillsyn.api.models import X` works whatever module holds X.
"""

from __future__ import annotations

from .audit import *  # noqa: F403
from .board import *  # noqa: F403
from .common import *  # noqa: F403
from .devices import *  # noqa: F403
from .evaluation import *  # noqa: F403
from .residents import *  # noqa: F403
from .rounds import *  # noqa: F403
from .session import *  # noqa: F403
from .shared_tablets import *  # noqa: F403
from .structure import *  # noqa: F403
