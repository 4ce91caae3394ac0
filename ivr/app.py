"""Wiring: config -> flows, services and router, in one place."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ivr.config import Config
from ivr.data.directory import MemoryDirectory
from ivr.flow.repository import FlowRepository
from ivr.nlu.router import IntentRouter
from ivr.services import BusinessCalendar, CallServices, MemoryOutbox, ProfileVerifier, StaticFlags

_LOGGER = logging.getLogger(__name__)


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
                   now: Callable[[], datetime] | None = None, history=None) -> CallServices:
    """`history` (an ivr.store.history.HistoryStore) is the customer directory, verifier and
    prediction record of live calls; without it, the in-memory demo customers serve."""
    if history is not None:
        from ivr.store.history import HistoryVerifier

        directory, verifier = history, HistoryVerifier(history)
    else:
        # a simulated call time (`at:`) also fixes the date the profiles' "due soon" facts use
        directory = MemoryDirectory.from_jsonl(today=now().date() if now else None)
        verifier = ProfileVerifier()
    return CallServices(
        directory=directory,
        flags=StaticFlags({**config.flags, **(flags or {})}),
        calendar=build_calendar(config, now),
        sms=MemoryOutbox(),
        verifier=verifier,
        router=router or build_router(config),
        predictions=history,
    )


def build_sms(config: Config, db_path: Path):
    """The SMS outbox on the store at `db_path`, delivering through the configured gateway."""
    from ivr.sms.gateways import EmbeddedGateway, HttpGateway
    from ivr.sms.outbox import SmsOutbox
    from ivr.store.links import LinkTokens

    sms = config.sms
    if sms.gateway == "http":
        gateway = HttpGateway(sms.http_url, method=sms.http_method, headers=sms.http_headers,
                              body=sms.http_body, content_type=sms.http_content_type,
                              timeout=sms.http_timeout)
    else:
        gateway = EmbeddedGateway()
    return SmsOutbox(db_path, gateway, base_url=config.web.public_url,
                     links=LinkTokens(db_path, ttl=sms.link_minutes * 60.0),
                     retries=sms.retries, backoff=sms.backoff)


def open_history(config: Config, path: Path | None = None, *, seed: bool = False):
    """The HistoryStore at `path` (default VAR_DIR/ivr.db). With `seed`, an empty store first
    gets the demo population (config `history.seed_demo`)."""
    from ivr.store.history import HistoryStore

    path = path or config.var_dir / "ivr.db"
    history = HistoryStore(path)
    if seed and config.history.seed_demo and history.customer_count() == 0:
        from ivr.data.population import population
        from ivr.store.history_import import import_records

        report = import_records(population(config.history.demo_customers, seed=config.history.demo_seed),
                                path, name="demo-data")
        _LOGGER.warning("history: seeded %d demo customers into %s", report.loaded, path)
    return history


class Hotline:
    """What a telephony adapter needs from the rest of the system: run one call on the
    current flows (recorded in the store), and turn a prompt into a file Asterisk can play."""

    def __init__(self, config: Config, repo, services: CallServices, *, store=None, prompts=None,
                 asterisk_root: Path | None = None, ami=None, hearing=None, audio_server=None,
                 history=None) -> None:
        self.config = config
        self.repo = repo
        self.services = services
        self.store = store
        self.history = history  # learns contacts and prediction outcomes from every call
        self.call_ended: list[Callable[[str], Any]] = []  # e.g. revoke the call's page links
        self.prompts = prompts
        self.asterisk_root = asterisk_root or Path("/")
        self.ami = ami
        self.hearing = hearing  # speech recognition for live calls (None: keys only)
        self.audio_server = audio_server  # where Asterisk streams callers' audio
        self.active: dict[str, Any] = {}
        self._background: set[asyncio.Task] = set()  # fire-and-forget AMI events, kept referenced

    async def run_call(self, channel, caller: str, *, on_event=None, channel_name: str = "",
                       lang: str | None = None):
        from ivr.flow.engine import CallRunner

        runner = CallRunner(self.repo.current, channel, self.services, caller=caller, lang=lang)
        if on_event is not None:
            runner.stream.subscribe(on_event)
        if self.store is not None:
            self.store.attach(runner.stream, runner.state, channel=channel_name or None)
        if self.history is not None:
            self.history.attach(runner.stream, runner.state)
        if self.ami is not None:
            runner.stream.subscribe(self._admin_events(runner, channel_name))
        if hasattr(channel, "on_timing"):
            channel.on_timing = self._timing_publisher(runner, channel)
        answered = getattr(channel, "answered_at", None)
        if answered is not None:
            try:
                t0 = await answered()
            except Exception:  # the caller may already be gone; the call itself reports that
                t0 = None
            runner.stream.subscribe(self._first_prompt_timer(runner, t0))
        self.active[runner.state.call_id] = runner
        try:
            return await runner.run()
        finally:
            self.active.pop(runner.state.call_id, None)
            if self.store is not None:
                self.store.finish(runner.state.call_id, runner.state)
            if self.history is not None:
                looked_up = runner.ctx is not None  # ctx.profile is what the look-up found
                self.history.finish(runner.state.call_id, runner.state,
                                    known=bool(runner.ctx.profile) if looked_up else None)
            for listener in self.call_ended:
                try:
                    listener(runner.state.call_id)
                except Exception:  # one broken listener must not stop the others
                    _LOGGER.exception("call-end listener failed for %s", runner.state.call_id)

    @staticmethod
    def _timing_publisher(runner, channel):
        from ivr import events as ev

        def publish(name: str, ms: float) -> None:
            runner.stream.publish(ev.Timing(t=channel.clock(), name=name, ms=round(ms, 1)))

        return publish

    @staticmethod
    def _first_prompt_timer(runner, answered_at: float | None):
        """Publish answer_to_first_prompt once: from the dialplan's Answer to our first prompt."""
        import time

        from ivr import events as ev

        done = [answered_at is None]

        def on_event(event) -> None:
            if not done[0] and isinstance(event, ev.Prompt):
                done[0] = True
                ms = (time.time() - answered_at) * 1000
                runner.stream.publish(ev.Timing(t=event.t, name="answer_to_first_prompt", ms=round(ms, 1)))

        return on_event

    def _admin_events(self, runner, channel_name: str):
        """UserEvents so admins watching AMI see each call's scene as it changes."""
        from ivr import events as ev

        def publish(event) -> None:
            if isinstance(event, (ev.Scene, ev.Transfer, ev.Hangup)):
                fields = {"Channel": channel_name, "CallID": runner.state.call_id,
                          "Scene": runner.state.scene, "IvrEvent": str(event.type)}
                self.spawn(self.ami.user_event("IVRState", fields))

        return publish

    def spawn(self, coro) -> asyncio.Task:
        """Run a fire-and-forget coroutine (an AMI action), kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def prompt_parts(self, prompt):
        """The prompt as paths Asterisk plays one after another, each as soon as it is ready
        (a long uncached prompt comes sentence by sentence: `PromptCache.render_parts`)."""
        if prompt.audio or not hasattr(self.prompts, "render_parts"):
            yield await self.prompt_file(prompt)
            return
        async for path in self.prompts.render_parts(prompt.text, prompt.lang):
            yield "/" + str(Path(path).relative_to(self.asterisk_root))

    def playable(self, path: str) -> bool:
        """Whether a prompt path from `prompt_parts` (as Asterisk sees it) has its audio file:
        a failed playback of an existing file means the caller hung up."""
        on_host = self.asterisk_root / path.lstrip("/")
        return any(on_host.with_name(on_host.name + ext).is_file() for ext in (".wav", ".sln16"))

    async def prompt_file(self, prompt) -> str:
        """The prompt rendered (or its recorded override), as a path Asterisk plays: no extension."""
        audio = self.config.resolve(self.config.flows.dir) / prompt.audio if prompt.audio else None
        path = await self.prompts.render(prompt.text, prompt.lang, audio=audio)
        return "/" + str(Path(path).relative_to(self.asterisk_root))
