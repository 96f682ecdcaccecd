"""An asyncio streams client that verifies an echo.

usage: asyncio_echo_client.py PORT SIZE CHUNK MODE

Sends SIZE bytes in writes of CHUNK bytes (TCP_NODELAY, so small chunks go
out as small segments) while reading the echo. MODE "wait": read until every
byte is back, then close; "eof": half-close after the last byte (write_eof)
and read until the server's EOF, which must come after the whole echo.
Prints "ok" or what went wrong.
"""

import asyncio
import socket
import sys

port, size, chunk = (int(a) for a in sys.argv[1:4])
mode = sys.argv[4]
payload = bytes((i * 13 + i // 253) % 256 for i in range(size))


async def main():
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send():
        for i in range(0, size, chunk):
            writer.write(payload[i : i + chunk])
            await writer.drain()
        if mode == "eof":
            writer.write_eof()

    sender = asyncio.ensure_future(send())
    got = bytearray()
    if mode == "eof":
        while data := await reader.read(65536):
            got += data
    else:
        while len(got) < size:
            data = await reader.read(65536)
            if not data:
                break
            got += data
    await sender
    writer.close()
    print("ok" if bytes(got) == payload else "got %d of %d bytes, equal prefix: %s" % (len(got), size, payload.startswith(bytes(got))))


asyncio.run(asyncio.wait_for(main(), 30))
