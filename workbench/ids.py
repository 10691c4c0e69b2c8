"""Run ids: `YYYYmmdd-HHMMSS-xxxx` (sortable by creation time, readable, unique enough for one machine's runs).

Standard library only: a launcher makes the id before it imports the store (see runner/spawn.py).
"""

from __future__ import annotations

import secrets
from datetime import datetime


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
