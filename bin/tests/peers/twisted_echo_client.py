"""The Twisted tutorial's echo client, ported to Python 3, verifying.

usage: twisted_echo_client.py PORT CONNECTIONS SIZE

Each of CONNECTIONS connections sends SIZE bytes on connectionMade (the
tutorial sends "hello, world!"), collects the echo, and when all of it is
back checks it and calls loseConnection. Prints "ok N" when all N echoes
came back exactly, else one line per failure.
"""

import sys

from twisted.internet import protocol, reactor

port, connections, size = (int(a) for a in sys.argv[1:4])
payload = bytes((i * 7 + i // 251) % 256 for i in range(size))
results = []


class EchoClient(protocol.Protocol):
    def connectionMade(self):
        self.got = bytearray()
        self.transport.write(payload)

    def dataReceived(self, data):
        self.got += data
        if len(self.got) >= len(payload):
            self.transport.loseConnection()

    def connectionLost(self, reason):
        results.append(bytes(self.got) == payload or "got %d of %d bytes" % (len(self.got), size))
        if len(results) == connections:
            reactor.stop()


class EchoFactory(protocol.ClientFactory):
    protocol = EchoClient

    def clientConnectionFailed(self, connector, reason):
        results.append("connect failed: %s" % reason.getErrorMessage())
        if len(results) == connections:
            reactor.stop()


for _ in range(connections):
    reactor.connectTCP("127.0.0.1", port, EchoFactory())
reactor.callLater(30, reactor.stop)
reactor.run()
bad = [r for r in results if r is not True]
print("ok %d" % len(results) if len(results) == connections and not bad else "\n".join(map(str, bad)) or "timed out")
