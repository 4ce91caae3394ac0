"""The controller process (`ivr serve`): start order of the live services, and clean stop.

flows -> router (warm) -> AMI + AstDB flags -> store -> prompt cache -> speech (models warm,
AudioSocket server) -> FastAGI or ARI -> the web app (admin page, `web.*`).
`ivr up` runs this in the background and waits for its ready file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path

from ivr.app import Hotline, build_router, build_services, build_sms, flow_repository, open_history
from ivr.config import Config

_LOGGER = logging.getLogger(__name__)


def ready_file(config: Config) -> Path:
    return config.var_dir / "run" / "controller.ready"


def prompts_ready_file(config: Config) -> Path:
    """Written when the static prompts are rendered: `ivr up` waits for it, so that the first
    calls play every fixed prompt at once instead of waiting for (and losing keys to) a render."""
    return config.var_dir / "run" / "prompts.ready"


async def serve(config: Config) -> None:
    from ivr.speech.prompts import PromptCache
    from ivr.speech.voices import build_synthesizer, prerender_cache
    from ivr.telephony.ami import AmiClient, AstDbFlags
    from ivr.telephony.asterisk import SOUNDS_DIR, AsteriskHost, load_secrets

    tel = config.telephony
    prompts_ready_file(config).unlink(missing_ok=True)
    repo = flow_repository(config)
    flows = repo.load()
    router = build_router(config)
    await asyncio.to_thread(router.warm, flows)
    host = AsteriskHost.locate(config, provision=False)
    secrets = load_secrets(config.var_dir)
    ami = AmiClient(tel.bind, tel.ami_port, "ivr", secrets["AMI_SECRET"])
    await _retry(ami.connect, "AMI")
    flags = AstDbFlags(ami, tel.admin_poll, initial={str(k): str(v) for k, v in config.flags.items()})
    await flags.refresh()
    store = _open_store(config)
    history = await asyncio.to_thread(open_history, config, seed=True)
    sms = build_sms(config, config.var_dir / "ivr.db")
    services = dataclasses.replace(build_services(config, router=router, history=history), flags=flags,
                                   sms=sms)
    prompts = PromptCache(host.host_path(SOUNDS_DIR) / "cache",
                          await asyncio.to_thread(build_synthesizer, config.speech))
    hearing, audio_server = await _start_hearing(config)
    hotline = Hotline(config, repo, services, store=store, prompts=prompts,
                      asterisk_root=host.root, ami=ami, hearing=hearing, audio_server=audio_server,
                      history=history)
    hotline.call_ended.append(sms.call_ended)
    prerenderer = prerender_cache(prompts, config.speech)
    tasks = [asyncio.create_task(flags.run(), name="astdb-flags"),
             asyncio.create_task(_prerender(prerenderer, repo, prompts_ready_file(config)),
                                 name="prompt-prerender")]
    if config.flows.reload:
        tasks.append(asyncio.create_task(
            repo.watch(config.flows.reload_interval, _preparer(prerenderer, router, repo),
                       on_swap=lambda flowset: _write_ready(config, flowset)),
            name="flow-reload"))
    if tel.controller == "agi":
        from ivr.telephony.agi import FastAgiServer

        controller = FastAgiServer(hotline, tel.bind, tel.agi_port)
    else:
        from ivr.telephony.ari import AriController

        controller = AriController(hotline, tel.bind, tel.http_port, "ivr", secrets["ARI_SECRET"], tel.ari_app)
    await controller.start()
    web_server = await _start_web(config, hotline, sms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = _write_ready(config, flows)
    _LOGGER.warning("controller ready: %s on flows %s", tel.controller, flows.version)
    try:
        await stop.wait()
    finally:
        for task in tasks:  # first: a flow swap must not write the ready file again
            task.cancel()
        ready.unlink(missing_ok=True)
        prompts_ready_file(config).unlink(missing_ok=True)
        if web_server is not None:
            await web_server.stop()
        await controller.stop()
        if audio_server is not None:
            await audio_server.stop()
        if hotline.active:
            _LOGGER.warning("stopping with %d calls in progress; the dialplan takes them over",
                            len(hotline.active))
        await history.drain()
        await sms.close()
        await asyncio.to_thread(store.close, 30)
        history.close()
        ami.close()


def _write_ready(config: Config, flows) -> Path:
    """The ready file: this process, its controller and the flow version it serves (`ivr status`)."""
    ready = ready_file(config)
    ready.parent.mkdir(parents=True, exist_ok=True)
    staged = ready.with_name(ready.name + ".tmp")
    staged.write_text(f"{os.getpid()} {config.telephony.controller} {flows.version}\n")
    os.replace(staged, ready)  # `ivr up` and `ivr status` never read half a file
    return ready


async def _start_web(config: Config, hotline: Hotline, sms):
    """The web app on web.bind:web.port, over the same store: the admin page, and the callers'
    visual pages over this process's live calls. A port that is taken is logged and the
    controller runs on without it: calls matter more than the page."""
    if not config.web.enabled:
        return None
    from ivr.errors import IvrError
    from ivr.live import LiveCalls
    from ivr.verification import page_methods
    from ivr.web import admin, visual
    from ivr.web.run import start_web
    from ivr.web.visits import Visits

    visits = Visits()
    methods = page_methods(hotline.services.verifier, sms)  # knowledge factors and texted codes
    hotline.call_ended.append(visits.end_call)  # the page dies with its call
    hotline.call_ended.append(methods.end_call)  # and so do its codes
    pages = [admin.setup, visual.setup_for(LiveCalls(hotline.active), sms.links, methods, visits)]
    try:
        return await start_web(config, config.var_dir / "ivr.db", pages_setup=pages)
    except IvrError as exc:
        _LOGGER.error("web app not started: %s", exc)
        return None


async def _start_hearing(config: Config):
    """Speech for live calls: the models loaded now (a missing one stops the start with its
    clear error, naming `ivr models install`) and the AudioSocket server callers' audio comes to."""
    if not config.speech.enabled:
        return None, None
    from ivr.speech.hearing import Hearing
    from ivr.telephony.audiosocket import AudioSocketServer

    hearing = Hearing(config.speech)
    await asyncio.to_thread(hearing.warm)
    server = AudioSocketServer(config.telephony.bind, config.speech.audiosocket_port)
    await server.start()
    return hearing, server


async def _prerender(prompts, repo, done: Path) -> None:
    """Render every static prompt now, so calls play them at once (and keys pressed during
    a prompt are never lost to a render); then write `done` (rendered or not: a failed render
    is rendered again on first use)."""
    from ivr.speech.voices import prerender_items

    items = prerender_items(repo.current, repo.paths[0])  # recorded overrides too
    started = asyncio.get_running_loop().time()
    try:
        await prompts.prerender(items)
    except Exception:
        _LOGGER.exception("prompt prerender failed; prompts will render on first use")
        status = "failed"
    else:
        status = "rendered"
        _LOGGER.info("prerendered %d prompts in %.1f s", len(items),
                     asyncio.get_running_loop().time() - started)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(f"{status} {len(items)}\n")


def _preparer(prompts, router, repo):
    """What an edited flow set needs before it goes live: its intents embedded and its new
    static prompts rendered (the unchanged ones are in the cache already)."""
    from ivr.speech.voices import prerender_items

    async def prepare(flowset) -> None:
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(router.warm, flowset)
        await prompts.prerender(prerender_items(flowset, repo.paths[0]))
        _LOGGER.info("flow version %s prepared in %.1f s", flowset.version,
                     asyncio.get_running_loop().time() - started)

    return prepare


def _open_store(config: Config):
    from ivr.store.calls import CallStore

    return CallStore(config.var_dir / "ivr.db")


async def _retry(connect, what: str, attempts: int = 30) -> None:
    for attempt in range(attempts):
        try:
            await connect()
            return
        except Exception as exc:
            if attempt == attempts - 1:
                raise ConnectionError(f"{what} unavailable: {exc}") from exc
            await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
