"""Wiring: config -> flows, services and router, in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from ivr.config import Config
from ivr.data.directory import MemoryDirectory
from ivr.flow.repository import FlowRepository
from ivr.nlu.router import IntentRouter
from ivr.services import BusinessCalendar, CallServices, MemoryOutbox, ProfileVerifier, StaticFlags


def flow_repository(config: Config, paths: list[str] | None = None) -> FlowRepository:
    return FlowRepository(paths or [str(config.resolve(config.flows.dir))],
                          queues_conf=str(config.resolve(config.paths.dialplans) / "queues.conf"))


def build_router(config: Config) -> IntentRouter:
    embedder = None
    if config.router.backend == "e5":
        from ivr.nlu.embedder import E5Embedder

        embedder = E5Embedder(config.var_dir / "cache" / "embeddings.sqlite", config.router.threads)
    return IntentRouter(embedder, min_score=config.router.min_score,
                        clarify_margin=config.router.clarify_margin)


def build_calendar(config: Config, now: Callable[[], datetime] | None = None) -> BusinessCalendar:
    cal = config.calendar
    return BusinessCalendar(cal.business_hours, cal.timezone, cal.holidays_country,
                            cal.extra_holidays, cal.extra_workdays, now)


def build_services(config: Config, *, router: IntentRouter | None = None, flags: dict | None = None,
                   now: Callable[[], datetime] | None = None) -> CallServices:
    return CallServices(
        # a simulated call time (`at:`) also fixes the date the profiles' "due soon" facts use
        directory=MemoryDirectory.from_jsonl(today=now().date() if now else None),
        flags=StaticFlags({**config.flags, **(flags or {})}),
        calendar=build_calendar(config, now),
        sms=MemoryOutbox(),
        verifier=ProfileVerifier(),
        router=router or build_router(config),
    )
