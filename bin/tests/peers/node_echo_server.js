// A Node.js `net` echo server: every socket piped into itself (Node's
// default allowHalfOpen: false ends the write side after pending writes when
// the peer's FIN arrives). Prints "PORT <n>" once listening on 127.0.0.1.
const net = require('net');
const server = net.createServer((socket) => socket.pipe(socket));
server.listen(0, '127.0.0.1', () => {
  console.log('PORT ' + server.address().port);
});
