"""An asyncio streams echo server (the Python docs' pattern).

Prints "PORT <n>" once listening on 127.0.0.1.

    asyncio_echo_server.py                          # plain TCP
    asyncio_echo_server.py --tls CERT KEY           # TLS (Python's ssl, OpenSSL)
    asyncio_echo_server.py --read 1000 --pause 0.001  # a slow peer: small reads, a rest after each
"""

import argparse
import asyncio
import ssl


async def handle(reader, writer, size, pause):
    while data := await reader.read(size):
        writer.write(data)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
    writer.close()
    await writer.wait_closed()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--read", type=int, default=65536)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.read, args.pause), "127.0.0.1", 0, ssl=context
    )
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
