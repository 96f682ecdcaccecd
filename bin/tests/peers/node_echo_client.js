// A Node.js `net` client that verifies an echo.
// usage: node node_echo_client.js PORT SIZE
// Sends SIZE bytes, ends its side (FIN) once written, reads until the
// server's end, and prints "ok" when exactly the bytes sent came back.
const net = require('net');
const [port, size] = process.argv.slice(2).map(Number);
const payload = Buffer.alloc(size);
for (let i = 0; i < size; i++) payload[i] = (i * 17 + Math.floor(i / 241)) % 256;
const chunks = [];
const socket = net.connect(port, '127.0.0.1', () => socket.end(payload));
socket.setNoDelay(true);
socket.on('data', (d) => chunks.push(d));
socket.on('end', () => {
  const got = Buffer.concat(chunks);
  console.log(got.equals(payload) ? 'ok' : `got ${got.length} of ${size} bytes`);
});
socket.on('error', (e) => console.log('error: ' + e.message));
setTimeout(() => { console.log('timed out'); process.exit(1); }, 30000).unref();
