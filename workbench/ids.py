"""Run ids: `YYYYmmdd-HHMMSS-xxxx` (sortable by creation time, readable, unique enough for one machine's runs)."""

from __future__ import annotations

import secrets
from datetime import datetime


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
