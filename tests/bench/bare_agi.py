"""The baseline for `ivr bench calls`: a bare panoramisk FastAGI handler that answers, plays
a prompt, reads one digit, plays the second prompt and goodbye, and hangs up: the same
call as tests/bench/flows_calls/. Run as a separate process so its CPU is its own.

usage: python bare_agi.py PORT PROMPT SECOND_PROMPT GOODBYE (paths as Asterisk sees them)
"""

import asyncio
import sys

from panoramisk.fast_agi import Application


async def main(port: int, prompt: str, second: str, goodbye: str) -> None:
    async def bare(request):
        await request.send_command("ANSWER")
        await request.send_command(f'STREAM FILE {prompt} ""')
        await request.send_command("WAIT FOR DIGIT 5000")
        await request.send_command(f'STREAM FILE {second} ""')
        await request.send_command(f'STREAM FILE {goodbye} ""')
        await request.send_command("HANGUP")

    app = Application()
    app.add_route("bare", bare)
    server = await asyncio.start_server(app.handler, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), *sys.argv[2:5]))
