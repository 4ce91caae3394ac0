"""Real test calls with SIPp: a simulator script (keys, pauses, hangup) becomes a SIPp
scenario that dials the hotline, sends RFC 4733 digits from SIPp's pcaps, and hangs up, or
waits for the hotline to hang up.

Used by `ivr call`, the end-to-end tests and the call benchmark.
"""

from __future__ import annotations

import csv
import shutil
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from ivr.errors import IvrError
from ivr.sim import Script

PCAP_DIR = Path("/usr/share/sip-tester")
PCAP_NAMES = {**{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)}, "*": "dtmf_2833_star.pcap",
              "#": "dtmf_2833_pound.pcap"}
KEY_GAP_MS = 450  # each pcap holds one ~250 ms digit

INVITE = """
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
"""
ACK = """
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
"""
BYE = """
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [cseq] BYE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
"""
INFO = """
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [cseq] INFO
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=KEY
      Duration=200
"""
OK_FOR_BYE = """
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Content-Length: 0
"""


def _cdata(text: str) -> str:
    return f"<![CDATA[{text}]]>"


def _renumbered_pcap(src: Path, dest: Path, index: int) -> Path:
    """A copy of SIPp's one-digit pcap whose RTP sequence numbers and timestamp come after those
    of the call's previous digit. The stock pcaps carry fixed numbers (1 < 2 < ... < 9 < * < #,
    then 0), and Asterisk drops an RFC 4733 event whose numbers are not newer than the last one:
    without this, "32" or "11" would lose the second key. (SIPp recomputes the UDP checksum.)
    Falls back to the stock file if the capture isn't Ethernet/IPv4/UDP as expected."""
    data = bytearray(src.read_bytes())
    if len(data) < 24:
        return src
    end = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}.get(bytes(data[:4]))
    if end is None or struct.unpack(end + "I", data[20:24])[0] != 1:  # 1 = Ethernet
        return src
    offset, packet = 24, 0
    while offset + 16 <= len(data):
        incl = struct.unpack(end + "I", data[offset + 8:offset + 12])[0]
        frame = offset + 16
        ip = frame + 14
        if data[frame + 12:frame + 14] != b"\x08\x00" or data[ip + 9] != 17:  # IPv4, UDP
            return src
        rtp = ip + (data[ip] & 0x0F) * 4 + 8
        if rtp + 12 > frame + incl:
            return src
        struct.pack_into(">HI", data, rtp + 2, (1000 + index * 32 + packet) & 0xFFFF,
                         (8000 + index * 8000) & 0xFFFFFFFF)
        offset, packet = frame + incl, packet + 1
    dest.write_bytes(bytes(data))
    return dest


def speech_file(text: str, lang: str, dest: Path, speech_cfg=None) -> float:
    """The caller's words as SIPp's `rtp_stream` wants them: raw A-law, 8 kHz (a WAV would be
    sent header and all). Spoken by the hotline's own voice for the language. Returns seconds."""
    from ivr.speech.voices import say_to_file

    wav = dest.with_suffix(".wav")
    if speech_cfg is None:
        from ivr.config import SpeechConfig

        speech_cfg = SpeechConfig()
    info = say_to_file(speech_cfg, text, lang, str(wav), rate=8000)
    proc = subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-e", "a-law", "-t", "al", str(dest)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise IvrError(f"sox could not make A-law audio: {proc.stderr.strip()[:200]}", code="call-audio")
    return float(info["seconds"])


def scenario(script: Script, *, answer_wait_ms: int = 1500, key_gap_ms: int = 2000,
             end_wait_ms: int = 30000, dtmf: str = "rfc4733", pcap_dir: Path | None = None,
             speech_cfg=None, say_gap_ms: int | None = None) -> str:
    """SIPp XML for one scripted caller. Keys start after `answer_wait_ms`; each dtmf action
    waits `key_gap_ms` first (the caller listens), `silence: N` pauses N seconds; at the end the
    caller waits up to `end_wait_ms` for the hotline to hang up, then hangs up itself.
    With `pcap_dir`, RFC 4733 keys are played from renumbered copies written there (any key
    sequence works); without it, from SIPp's stock pcaps (a key that repeats the last one, or
    comes earlier in 1..9 * # 0 order, is dropped by Asterisk).
    A `say` action waits `say_gap_ms` (default: `key_gap_ms`), then streams the words, spoken by
    the hotline's voice, as the caller's RTP; keys in such a call go as SIP INFO, because
    Asterisk drops RFC 4733 digits that come from another port than the stream's."""
    digits = 0
    says = 0
    if any(a.kind == "say" for a in script.actions):
        dtmf = "info"
        if pcap_dir is None:
            raise IvrError("a call that speaks needs a work folder for its audio", code="call-audio")
    body = [f'<send retrans="500">{_cdata(INVITE)}</send>',
            '<recv response="100" optional="true"/>', '<recv response="180" optional="true"/>',
            '<recv response="183" optional="true"/>', '<recv response="200" rtd="true"/>',
            f"<send>{_cdata(ACK)}</send>", f'<pause milliseconds="{answer_wait_ms}"/>']
    caller_hangs_up = False
    keys_sent = 0
    for action in script.actions:
        if action.kind == "dtmf":
            body.append(f'<pause milliseconds="{key_gap_ms}"/>')
            for key in action.value:
                if key not in PCAP_NAMES:
                    raise IvrError(f"no DTMF for key {key!r}", code="call-bad-key")
                if dtmf == "info":
                    # the hotline may hang up right after this key, before its 200 OK arrives
                    keys_sent += 1
                    body.append(f'<send retrans="500">{_cdata(INFO.replace("KEY", key))}</send>')
                    body.append(f'<recv response="200" optional="true" next="key{keys_sent}"/>')
                    body.append('<recv request="BYE" next="server_bye"/>')
                    body.append(f'<label id="key{keys_sent}"/>')
                else:
                    stock = PCAP_DIR / PCAP_NAMES[key]
                    if pcap_dir is not None:
                        stock = _renumbered_pcap(stock, pcap_dir / f"dtmf_{digits:03d}.pcap", digits)
                        digits += 1
                    pcap = escape(str(stock))
                    body.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
                body.append(f'<pause milliseconds="{KEY_GAP_MS}"/>')
        elif action.kind == "silence":
            body.append(f'<pause milliseconds="{int(action.value * 1000)}"/>')
        elif action.kind == "hangup":
            caller_hangs_up = True
            break
        elif action.kind == "say":
            text, lang = (action.value, script.lang or "en") if isinstance(action.value, str) \
                else (action.value.get("text", ""), action.value.get("lang") or script.lang or "en")
            audio = pcap_dir / f"say_{says:03d}.al"
            says += 1
            seconds = speech_file(str(text), str(lang), audio, speech_cfg)
            body.append(f'<pause milliseconds="{key_gap_ms if say_gap_ms is None else say_gap_ms}"/>')
            body.append(f'<nop><action><exec rtp_stream="{escape(str(audio))},1,8"/></action></nop>')
            body.append(f'<pause milliseconds="{int(seconds * 1000) + 100}"/>')
        elif action.kind == "click":
            raise IvrError("`click` is a tap on the visual page, which a SIP call cannot make; this "
                           "call can only press keys, speak, pause and hang up", code="call-unsupported-action")
    if caller_hangs_up:
        body += [f'<send retrans="500">{_cdata(BYE)}</send>',
                 '<recv response="200" crlf="true" next="done"/>',
                 '<label id="server_bye"/>',  # the hotline hung up while a key was on its way
                 f'<send>{_cdata(OK_FOR_BYE)}</send>']
    else:
        body += [f'<recv request="BYE" timeout="{end_wait_ms}" ontimeout="caller_bye"/>',
                 '<label id="server_bye"/>',
                 f'<send next="done">{_cdata(OK_FOR_BYE)}</send>',
                 '<label id="caller_bye"/>',
                 f'<send retrans="500">{_cdata(BYE)}</send>',
                 '<recv response="200" crlf="true"/>']
    body.append('<label id="done"/>')
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="ivr call">\n'
            + "\n".join(body) + "\n</scenario>\n")


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stats(self) -> dict:
        """SIPp's final counts (`-trace_stat`): successful and failed calls, retransmissions."""
        files = sorted(self.workdir.glob("*_.csv"))
        if not files:
            return {}
        with files[-1].open() as f:
            rows = list(csv.reader(f, delimiter=";"))
        data = dict(zip(rows[0], rows[-1]))
        pick = lambda k: int(data.get(k, "0") or 0)  # noqa: E731
        return {"successful": pick("SuccessfulCall(C)"), "failed": pick("FailedCall(C)"),
                "retransmissions": pick("Retransmissions(C)"),
                "response_time_ms": data.get("ResponseTime1(P)", "")}


def _free_port(span: int = 1, host: str = "127.0.0.1") -> int:
    """An even UDP port with `span` free ports from it. SIPp's `-p 0` is not "any port": it
    tries 5060 first, and a call placed while Asterisk restarts would take Asterisk's SIP port;
    `-mp`/`-cp` default to fixed ports that two SIPp runs at once would share."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1] & ~1
        held = []
        try:
            for port in range(base, base + span):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise IvrError("no free UDP port for SIPp", code="sipp-no-port")


def run(script: Script, *, target: str = "127.0.0.1:5060", service: str = "95511",
        caller: str = "", calls: int = 1, rate: float = 10.0, timeout: float = 300,
        **scenario_args) -> SippResult:
    """Place `calls` scripted calls (concurrently, at `rate` per second) and wait for them."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise IvrError("SIPp is not installed; run ./setup.sh", code="sipp-missing")
    work = Path(tempfile.mkdtemp(prefix="ivr-sipp-"))
    (work / "call.xml").write_text(scenario(script, pcap_dir=work, **scenario_args), encoding="latin-1")
    number = caller or script.caller or "anonymous"
    (work / "callers.csv").write_text("SEQUENTIAL\n" + f"{number};\n")
    argv = [sipp, target, "-sf", str(work / "call.xml"), "-inf", str(work / "callers.csv"),
            "-s", service, "-m", str(calls), "-l", str(calls), "-r", str(rate),
            "-i", "127.0.0.1", "-p", str(_free_port()), "-mp", str(_free_port(4)),
            "-cp", str(_free_port()), "-nostdin", "-timeout", f"{int(timeout)}s",
            "-timeout_error", "-trace_err", "-trace_stat", "-fd", "1", "-max_socket", "2048"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=work, timeout=timeout + 30)
    return SippResult(proc.returncode, proc.stdout, proc.stderr, work)
