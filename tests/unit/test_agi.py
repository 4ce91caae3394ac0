"""FastAGI connection handling without Asterisk."""

import asyncio
import socket

from ivr.telephony.agi import KEEPALIVE_IDLE_S, KEEPALIVE_PROBES, _keep_alive


def test_agi_connections_get_tcp_keepalive_so_a_silent_dead_peer_ends_the_call():
    async def scenario():
        accepted = asyncio.get_running_loop().create_future()

        async def on_connect(reader, writer):
            _keep_alive(writer)
            accepted.set_result(writer.get_extra_info("socket"))

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, client = await asyncio.open_connection("127.0.0.1", port)
        sock = await asyncio.wait_for(accepted, 5)
        options = (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                   sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                   sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
        client.close()
        server.close()
        await server.wait_closed()
        return options

    keepalive, idle, probes = asyncio.run(scenario())
    assert keepalive and idle == KEEPALIVE_IDLE_S and probes == KEEPALIVE_PROBES


class _Request:
    """panoramisk's Request as AgiChannel uses it: headers and send_command."""

    def __init__(self) -> None:
        self.headers = {"agi_channel": "PJSIP/loopback-00000001"}
        self.sent: list[str] = []

    async def send_command(self, line: str) -> dict:
        self.sent.append(line)
        return {"status_code": 200, "result": ("1", "")}


def _channel():
    from types import SimpleNamespace

    from ivr.telephony.agi import AgiChannel

    request = _Request()
    return AgiChannel(request, SimpleNamespace(ami=None, audio_server=None)), request


def test_queued_variables_go_in_one_array_command_before_the_next_command():
    async def scenario():
        channel, request = _channel()
        channel.show("IVR_SCENE", "bench")
        channel.show("IVR_CALL_ID", "fd0c62fb204d42189f27c6200224f2b8")
        channel.show("IVR_FLOW_VERSION", "33c4b92c13d3")
        await channel.command("WAIT FOR DIGIT 100")
        return request.sent

    assert asyncio.run(scenario()) == [
        'SET VARIABLE ARRAY(IVR_SCENE,IVR_CALL_ID,IVR_FLOW_VERSION) "bench,fd0c62fb204d42189f27c6200224f2b8,33c4b92c13d3"',
        "WAIT FOR DIGIT 100"]


def test_a_transfer_sets_values_array_would_split_alone_and_the_action_last():
    async def scenario():
        channel, request = _channel()
        channel.show("IVR_SCENE", "claims")
        await channel.transfer("agents", {"reason": "caller-agent", "scene": "claims", "note": "a, b (c)"})
        return request.sent

    sent = asyncio.run(scenario())
    assert sent[0].startswith('SET VARIABLE IVR_CONTEXT "{') and ", " in sent[0]
    assert sent[-1] == ('SET VARIABLE ARRAY(IVR_SCENE,IVR_QUEUE,IVR_REASON,IVR_PRIORITY,IVR_ACTION)'
                        ' "claims,agents,caller-agent,normal,transfer"')
    assert len(sent) == 2


def test_a_single_queued_variable_is_a_plain_set_variable():
    async def scenario():
        channel, request = _channel()
        await channel.hangup()
        return request.sent

    assert asyncio.run(scenario()) == ['SET VARIABLE IVR_ACTION "hangup"']
