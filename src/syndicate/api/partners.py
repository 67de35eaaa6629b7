"""HTTP routes of the partners channel."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["partners"])
