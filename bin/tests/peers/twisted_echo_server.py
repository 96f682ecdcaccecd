"""Twisted echo servers, as a Twisted user writes them.

usage: twisted_echo_server.py plain|wire

plain: a Protocol whose dataReceived writes the data back (the tutorial's
       server); wire: twisted.protocols.wire.Echo. Neither implements
       IHalfCloseableProtocol, so a client's FIN ends the connection at once
       and whatever echo was not yet written is dropped.
Prints "PORT <n>" once listening on 127.0.0.1.
"""

import sys

from twisted.internet import protocol, reactor
from twisted.protocols import wire


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


kind = sys.argv[1]
factory = protocol.Factory.forProtocol(wire.Echo if kind == "wire" else Echo)
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
print("PORT", port.getHost().port, flush=True)
reactor.run()
