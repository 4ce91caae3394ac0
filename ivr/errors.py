"""Errors with stable codes. The same code shows in events, logs, the CLI and pages."""

from __future__ import annotations

from dataclasses import dataclass


class IvrError(Exception):
    """An error a user can act on: a stable code and a plain message, never a traceback."""

    code = "ivr-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigError(IvrError):
    code = "config-invalid"


class FlowError(IvrError):
    code = "flow-invalid"


class ScriptError(IvrError):
    code = "script-invalid"


class ModelMissingError(IvrError):
    code = "model-missing"


class AsrModelMissingError(ModelMissingError):
    """No speech recognition model where config points; the message names `ivr models install`."""

    code = "asr-model-missing"


class TtsModelMissingError(ModelMissingError):
    """No TTS voice where config points; the message names `ivr models install`."""

    code = "tts-model-missing"


class AsrError(IvrError):
    """Recognition failed or was refused (asr-busy when the queue is full, asr-timeout)."""

    code = "asr-failed"


class TtsError(IvrError):
    """Rendering a prompt failed (the synthesizer or sox broke, or the text cannot be spoken)."""

    code = "tts-failed"


class TtsUnavailableError(TtsError):
    """The speech tool (espeak-ng, sox) is not installed; the message names the fix."""

    code = "tts-unavailable"


class CallerHangup(Exception):
    """Raised inside a call's coroutine when the caller has gone; not an error."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding from a loader or validator, reported as `path:line:col: code: message`."""

    path: str
    line: int
    col: int
    code: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code}: {self.message}"
