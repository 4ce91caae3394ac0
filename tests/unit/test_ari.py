"""The ARI controller against a fake ARI server (aiohttp test server): calls start on StasisStart,
DTMF barges in (the playback is DELETEd), a hangup mid-prompt ends the call as the caller's,
transfers and hangups set the dialplan's variables and `continue`, and a dropped websocket
reconnects and re-adopts through GET /channels without ever running a call twice."""

from __future__ import annotations

import dataclasses

import asyncio
import base64
import hashlib
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.app import Hotline, build_services, flow_repository
from ivr.config import load_config
from ivr.nlu.router import IntentRouter
from ivr.store import CallStore
from ivr.telephony import ari_client
from ivr.telephony.ari import AriController

ROOT = Path(__file__).resolve().parents[2]
APP = "hotline"
USER, PASSWORD = "ivr", "s3cret"
OPEN_AT = datetime(2026, 12, 3, 10, 0)  # a Thursday morning: agents are working
EN_CALLER = "+15550100005"  # en, no open claim: no proactive question


class FakeAri:
    """Just enough of ARI: the events websocket, channels in Stasis, playbacks, variables."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.channels: dict[str, dict] = {}  # in our Stasis app
        self.variables: dict[str, dict[str, str]] = {}
        self.playbacks: dict[str, str] = {}  # playing: playback id -> channel id
        self.plays: list[tuple[str, str, str]] = []  # (channel, playback id, media)
        self.auto_finish: float | None = 0.01  # playbacks end by themselves after this
        self.fail_play: dict[str, int] = {}  # channel id -> HTTP status for its play requests
        self.connections = 0
        self.blocked = 0  # polls of a command waiting behind a playback
        self.bad_auth = 0
        self.app = web.Application()
        r = self.app.router
        r.add_get("/ari/events", self.events)
        r.add_get("/ari/channels", self.list_channels)
        r.add_post("/ari/channels/{id}/play/{pid}", self.play)
        r.add_post("/ari/channels/{id}/variable", self.set_variable)
        r.add_get("/ari/channels/{id}/variable", self.get_variable)
        r.add_post("/ari/channels/{id}/continue", self.cont)
        r.add_get("/ari/playbacks/{pid}", self.get_playback)
        r.add_delete("/ari/playbacks/{pid}", self.stop_playback)

    def _authorized(self, request: web.Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            self.bad_auth += 1
            return False
        return True

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request) or request.query.get("app") != APP \
                or request.query.get("subscribeAll") != "false":
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.sockets.append(ws)
        try:
            async for _ in ws:
                pass
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
        return ws

    def _record(self, request: web.Request) -> None:
        assert self._authorized(request)
        self.requests.append((request.method, request.path, dict(request.query)))

    async def send(self, event: dict) -> None:
        """To every connected client; lost when none is connected (Asterisk replays nothing)."""
        for ws in list(self.sockets):
            await ws.send_json(event)

    # -- REST ----------------------------------------------------------------------------------
    async def list_channels(self, request):
        self._record(request)
        return web.json_response(list(self.channels.values()))

    async def play(self, request):
        self._record(request)
        cid, pid = request.match_info["id"], request.match_info["pid"]
        if cid in self.fail_play:
            return web.json_response({"message": "boom"}, status=self.fail_play[cid])
        if cid not in self.channels:
            return web.json_response({"message": "Channel not found"}, status=404)
        self.plays.append((cid, pid, request.query["media"]))
        self.playbacks[pid] = cid
        await self.send(_playback("PlaybackStarted", pid, cid))
        if self.auto_finish is not None:
            asyncio.get_running_loop().call_later(
                self.auto_finish, lambda: asyncio.ensure_future(self.finish(pid)))
        return web.json_response({"id": pid, "target_uri": f"channel:{cid}", "state": "queued"},
                                 status=201)

    async def finish(self, pid: str, *, notify: bool = True) -> None:
        cid = self.playbacks.pop(pid, None)
        if cid is not None and notify:
            await self.send(_playback("PlaybackFinished", pid, cid))

    async def get_playback(self, request):
        self._record(request)
        pid = request.match_info["pid"]
        if pid not in self.playbacks:
            return web.json_response({"message": "Playback not found"}, status=404)
        return web.json_response({"id": pid, "state": "playing"})

    async def stop_playback(self, request):
        self._record(request)
        pid = request.match_info["pid"]
        if pid not in self.playbacks:
            return web.json_response({"message": "Playback not found"}, status=404)
        await self.finish(pid)
        return web.Response(status=204)

    async def _idle(self, cid: str) -> None:
        """Like Asterisk: variable changes and `continue` run on the channel's Stasis command
        queue, so they wait behind a playback that is still running."""
        while cid in self.playbacks.values():
            self.blocked += 1
            await asyncio.sleep(0.005)

    async def set_variable(self, request):
        self._record(request)
        cid = request.match_info["id"]
        await self._idle(cid)
        if cid not in self.channels:
            return web.json_response({"message": "Channel not in Stasis application"}, status=409)
        self.variables.setdefault(cid, {})[request.query["variable"]] = request.query.get("value", "")
        return web.Response(status=204)

    async def get_variable(self, request):
        self._record(request)
        value = self.variables.get(request.match_info["id"], {}).get(request.query["variable"])
        if value is None:
            return web.json_response({"message": "Provided variable was not found"}, status=404)
        return web.json_response({"value": value})

    async def cont(self, request):
        self._record(request)
        cid = request.match_info["id"]
        await self._idle(cid)
        data = self.channels.pop(cid, None)
        if data is None:
            return web.json_response({"message": "Channel not in Stasis application"}, status=409)
        await self.send({"type": "StasisEnd", "application": APP, "channel": data})
        return web.Response(status=204)

    # -- what the test does as Asterisk and the caller -------------------------------------------
    async def start_call(self, cid: str, caller: str = EN_CALLER, *, announce: bool = True) -> None:
        data = {"id": cid, "name": f"PJSIP/caller-{cid}", "state": "Up",
                "caller": {"name": "", "number": caller},
                "dialplan": {"context": "ivr-ari", "exten": "start", "priority": 1,
                             "app_name": "Stasis", "app_data": APP}}
        self.channels[cid] = data
        if announce:
            await self.send({"type": "StasisStart", "application": APP, "args": [], "channel": data})

    async def dtmf(self, cid: str, digits: str) -> None:
        for digit in digits:
            await self.send({"type": "ChannelDtmfReceived", "application": APP, "digit": digit,
                             "duration_ms": 100, "channel": self.channels[cid]})

    async def hangup(self, cid: str, *, announce: bool = True) -> None:
        data = self.channels.pop(cid)
        for pid in [p for p, c in self.playbacks.items() if c == cid]:
            del self.playbacks[pid]
        if announce:
            for kind in ("ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"):
                await self.send({"type": kind, "application": APP, "channel": data})

    async def drop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

    def calls(self, method: str, suffix: str, cid: str | None = None) -> list[tuple[str, str, dict]]:
        return [r for r in self.requests if r[0] == method and r[1].endswith(suffix)
                and (cid is None or f"/{cid}/" in r[1] + "/")]


def _playback(kind: str, pid: str, cid: str) -> dict:
    return {"type": kind, "application": APP,
            "playback": {"id": pid, "target_uri": f"channel:{cid}", "media_uri": "sound:x",
                         "state": "done" if kind == "PlaybackFinished" else "playing"}}


class RecordingHotline(Hotline):
    """The real Hotline, noting which channel each call ran on (and how often)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.runs: dict[str, list[str]] = {}  # channel id -> call ids

    async def run_call(self, channel, caller, **kw):
        state = await super().run_call(channel, caller, **kw)
        self.runs.setdefault(channel.id, []).append(state.call_id)
        return state


class FakePrompts:
    """Prompt 'files' named after their text, so the test knows what is playing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.texts: dict[str, str] = {}

    async def render(self, text: str, lang: str, audio=None) -> Path:
        name = hashlib.sha1(f"{lang}:{text}".encode()).hexdigest()[:16]
        path = self.root / "var/lib/ivr/sounds/cache" / name
        self.texts["sound:/" + str(path.relative_to(self.root))] = text
        return path


@pytest.fixture(scope="module")
def config():
    # these tests follow prompts one by one: without the visual page's SMS notice at call start
    return dataclasses.replace(load_config(str(ROOT / "config.yaml")), flags={})


@pytest.fixture(scope="module")
def repo(config):
    repo = flow_repository(config)
    repo.load()
    return repo


@pytest.fixture
async def rig(tmp_path, config, repo, monkeypatch):
    monkeypatch.setattr(ari_client, "BACKOFF_FIRST", 0.02)
    fake = FakeAri()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    store = CallStore(tmp_path / "ivr.db", channel="ari")
    prompts = FakePrompts(tmp_path / "root")
    services = build_services(config, router=IntentRouter(None), now=lambda: OPEN_AT)
    hotline = RecordingHotline(config, repo, services, store=store, prompts=prompts,
                      asterisk_root=tmp_path / "root")
    controller = AriController(hotline, "127.0.0.1", server.port, USER, PASSWORD, APP)
    await controller.start()
    rig = Rig(fake, controller, store, prompts, hotline)
    try:
        yield rig
    finally:
        await controller.stop()
        await server.close()
        store.close()
    assert fake.bad_auth == 0


class Rig:
    def __init__(self, fake: FakeAri, controller: AriController, store: CallStore, prompts,
                 hotline: RecordingHotline) -> None:
        self.fake, self.controller, self.store, self.prompts = fake, controller, store, prompts
        self.hotline = hotline

    async def until(self, ready, timeout: float = 5.0, what: str = "") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not ready():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what or ready}")
            await asyncio.sleep(0.005)

    async def playing(self, cid: str, text: str, timeout: float = 5.0) -> str:
        """Wait until a prompt containing `text` is started on the channel; its playback id."""
        found: list[str] = []

        def ready() -> bool:
            for c, pid, media in self.fake.plays:
                if c == cid and text in self.prompts.texts.get(media, ""):
                    found.append(pid)
                    return True
            return False

        await self.until(ready, timeout, f"prompt {text!r} on {cid}")
        return found[0]

    def texts(self, cid: str) -> list[str]:
        return [self.prompts.texts.get(media, media) for c, _, media in self.fake.plays if c == cid]

    async def ended(self, cid: str) -> dict:
        await self.until(lambda: cid not in self.controller.calls, what=f"the call on {cid} to end")
        assert self.store.flush(5)
        [call_id] = self.hotline.runs[cid]  # one call per channel, never two
        [call] = [c for c in self.store.recent(50) if c["call_id"] == call_id] or [None]
        assert call is not None, "the call was not recorded"
        return call


MAIN_MENU = "press 1 for claims"
CLAIMS_MENU = "To check the progress of an existing claim"


async def test_a_stasis_start_runs_a_call_to_its_end_and_the_dialplan_hangs_up(rig):
    fake = rig.fake
    await fake.start_call("c1", caller="+1 (555) 010-0005'\";hangup")  # a hostile caller ID
    await rig.playing("c1", MAIN_MENU)
    await fake.dtmf("c1", "1")
    await rig.playing("c1", CLAIMS_MENU)
    await fake.dtmf("c1", "1")
    await rig.playing("c1", "8-digit claim number")
    await fake.dtmf("c1", "20261101")
    await rig.playing("c1", "Is there anything else")
    await fake.dtmf("c1", "2")
    call = await rig.ended("c1")
    assert call["outcome"] == "resolved" and call["ended_by"] == "ivr"
    assert call["scenes"] == ["welcome", "main_menu", "claims_menu", "claim_status", "anything_else"]
    assert call["caller"] == "+15*****0005"  # sanitised to +digits, then masked by the store
    variables = fake.variables["c1"]
    assert variables["IVR_ACTION"] == "hangup"
    assert variables["IVR_CALL_ID"] == call["call_id"] and variables["IVR_FLOW_VERSION"]
    assert variables["IVR_SCENE"] and "IVR_STEP" not in variables  # the scene, for admins
    # IVR_ACTION is set before the channel goes back to the dialplan, and it goes back once
    assert len(fake.calls("POST", "/continue", "c1")) == 1
    continued = fake.requests.index(fake.calls("POST", "/continue", "c1")[0])
    set_action = max(i for i, r in enumerate(fake.requests)
                     if r[1].endswith("/variable") and r[2].get("variable") == "IVR_ACTION")
    assert set_action < continued
    assert rig.controller.adopted == 0 and len(rig.controller.first_audio) == 1
    assert all(m == "sound:/var/lib/ivr/sounds/cache/" + m.rsplit("/", 1)[1] for _, _, m in fake.plays)


async def test_a_key_during_a_prompt_stops_the_playback_at_once(rig):
    fake = rig.fake
    fake.auto_finish = None  # prompts play until stopped
    await fake.start_call("c2")
    welcome = await rig.playing("c2", "Welcome to")
    await fake.finish(welcome)
    menu = await rig.playing("c2", MAIN_MENU)
    await asyncio.sleep(0.05)
    assert not fake.calls("DELETE", f"/playbacks/{menu}")  # nobody pressed anything yet
    await fake.dtmf("c2", "1")
    await rig.until(lambda: fake.calls("DELETE", f"/playbacks/{menu}"), 1.0, "the DELETE")
    claims = await rig.playing("c2", CLAIMS_MENU, timeout=1.0)
    deleted = fake.requests.index(fake.calls("DELETE", f"/playbacks/{menu}")[0])
    next_play = fake.requests.index(fake.calls("POST", f"/play/{claims}")[0])
    assert deleted < next_play  # stopped before the next prompt starts
    assert fake.blocked == 0  # admin variables go between prompts, never queued behind one
    assert fake.variables["c2"]["IVR_SCENE"] == "claims_menu"  # already set when it plays
    assert fake.variables["c2"]["IVR_PLAYBACK"] == claims
    await fake.hangup("c2")
    call = await rig.ended("c2")
    assert [e["value"] for e in call["events"] if e["type"] == "input"] == ["1"]
    assert "claims_menu" in call["scenes"]


async def test_keys_pressed_ahead_of_a_prompt_skip_it(rig):
    fake = rig.fake
    fake.auto_finish = None
    await fake.start_call("c3")
    welcome = await rig.playing("c3", "Welcome to")
    await fake.dtmf("c3", "1")  # during the greeting: barges in, and is kept as type-ahead
    await rig.playing("c3", CLAIMS_MENU, timeout=2.0)
    assert MAIN_MENU not in " ".join(rig.texts("c3"))  # the caller keyed ahead of the menu
    assert fake.calls("DELETE", f"/playbacks/{welcome}")
    await fake.hangup("c3")
    await rig.ended("c3")


async def test_a_hangup_mid_prompt_ends_the_call_as_the_callers(rig):
    fake = rig.fake
    fake.auto_finish = None
    await fake.start_call("c4")
    await rig.playing("c4", "Welcome to")
    await fake.hangup("c4")
    call = await rig.ended("c4")
    assert call["outcome"] == "hangup-caller" and call["ended_by"] == "caller"
    assert not fake.calls("POST", "/continue", "c4")  # a gone channel is not continued
    assert call["events"][-1]["type"] == "hangup" and call["events"][-1]["by"] == "caller"


async def test_a_transfer_sets_queue_reason_context_and_continues(rig):
    fake = rig.fake
    await fake.start_call("c5")
    await rig.playing("c5", MAIN_MENU)
    await fake.dtmf("c5", "0")
    call = await rig.ended("c5")
    assert call["outcome"] == "transferred" and call["transfer_queue"] == "agents"
    v = fake.variables["c5"]
    assert v["IVR_ACTION"] == "transfer" and v["IVR_QUEUE"] == "agents"
    assert v["IVR_REASON"] and v["IVR_PRIORITY"] in ("normal", "high")
    assert v["IVR_CONTEXT"].startswith("{") and '"' not in v["IVR_CONTEXT"]  # sanitised
    assert len(v["IVR_CONTEXT"]) <= 1000
    set_action = max(i for i, r in enumerate(fake.requests)
                     if r[1] == "/ari/channels/c5/variable" and r[2].get("variable") == "IVR_ACTION")
    queue_set = max(i for i, r in enumerate(fake.requests)
                    if r[1] == "/ari/channels/c5/variable" and r[2].get("variable") == "IVR_QUEUE")
    continued = fake.requests.index(fake.calls("POST", "/continue", "c5")[0])
    assert queue_set < continued and set_action < continued


async def test_the_websocket_drops_mid_call_and_the_same_call_continues(rig):
    fake, controller = rig.fake, rig.controller
    fake.auto_finish = None
    await fake.start_call("c6")
    await fake.finish(await rig.playing("c6", "Welcome to"))
    menu = await rig.playing("c6", MAIN_MENU)
    task = controller.calls["c6"].task
    listed_before = len(fake.calls("GET", "/ari/channels"))
    await fake.drop()
    await fake.finish(menu)  # the PlaybackFinished is lost: nobody is connected
    await fake.start_call("c7")  # a call that entered Stasis while we were away: StasisStart lost
    await rig.until(lambda: fake.connections == 2, 3.0, "the reconnect")
    await rig.until(lambda: len(fake.calls("GET", "/ari/channels")) > listed_before, 3.0, "GET /channels")
    await rig.until(lambda: fake.calls("GET", f"/playbacks/{menu}"), 3.0, "the playback check")
    assert controller.calls["c6"].task is task  # the same call, not a second one
    await fake.dtmf("c6", "1")  # keys after the reconnect reach the running call
    await rig.playing("c6", CLAIMS_MENU, timeout=2.0)
    await rig.playing("c7", "Welcome to", timeout=2.0)  # the lost call was adopted
    assert controller.adopted == 1
    await fake.hangup("c6")
    await fake.hangup("c7")
    call = await rig.ended("c6")
    await rig.ended("c7")
    assert call["scenes"][:3] == ["welcome", "main_menu", "claims_menu"]
    assert sum(1 for c, _, m in fake.plays if c == "c6" and "Welcome to" in rig.prompts.texts[m]) == 1


async def test_a_call_that_hung_up_while_disconnected_ends_after_the_reconnect(rig):
    fake = rig.fake
    fake.auto_finish = None
    await fake.start_call("c8")
    await rig.playing("c8", "Welcome to")
    await fake.drop()
    await fake.hangup("c8", announce=False)
    call = await rig.ended("c8")
    assert call["outcome"] == "hangup-caller"
    assert fake.connections == 2


async def test_a_second_stasis_start_for_a_running_call_is_ignored(rig):
    fake, controller = rig.fake, rig.controller
    fake.auto_finish = None
    await fake.start_call("c9")
    await rig.playing("c9", "Welcome to")
    task = controller.calls["c9"].task
    await fake.send({"type": "StasisStart", "application": APP, "args": [],
                     "channel": fake.channels["c9"]})
    await asyncio.sleep(0.05)
    assert controller.calls["c9"].task is task
    assert sum(1 for c, _, _ in fake.plays if c == "c9") == 1
    await fake.hangup("c9")
    await rig.ended("c9")


async def test_errors_on_one_call_leave_the_others_alone(rig):
    fake = rig.fake
    fake.fail_play["bad"] = 500  # every prompt on this channel fails
    await fake.start_call("bad")
    await fake.start_call("good")
    await rig.playing("good", MAIN_MENU)
    await fake.dtmf("good", "0")
    good = await rig.ended("good")
    assert good["outcome"] == "transferred"
    assert "bad" in rig.controller.calls  # still running: it waits for keys on a silent line
    await fake.dtmf("bad", "0")
    bad = await rig.ended("bad")
    assert bad["outcome"] == "transferred"


async def test_stop_hands_running_calls_to_the_dialplan_and_leaks_nothing(rig):
    fake, controller = rig.fake, rig.controller
    fake.auto_finish = None
    await fake.start_call("c10")
    await rig.playing("c10", "Welcome to")
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    await controller.stop()
    assert fake.calls("POST", "/continue", "c10")  # IVR_ACTION empty: the dialplan's fallback
    stopped = fake.requests.index(fake.calls("DELETE", "/playbacks/" + fake.plays[-1][1])[0])
    assert stopped < fake.requests.index(fake.calls("POST", "/continue", "c10")[0])
    assert "IVR_ACTION" not in fake.variables.get("c10", {})
    assert not controller.calls
    left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}
    assert not {t.get_name() for t in left if t.get_name().startswith("ari-")}, left
    assert before  # there were tasks to clean up
    await rig.until(lambda: not fake.sockets, 2.0, "the websocket to close")
