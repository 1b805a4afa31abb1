// A node:http server for oxtui: serves the socket handed over as fd 3 (LISTEN_FDS=1), or $PORT alone.
// Lossless drain on SIGTERM (see README): stop accepting without closing idle keep-alive connections
// at once (Node >= 19's server.close() does that and loses their queued requests), answer requests in
// flight with `Connection: close`, close what is idle after a 1 s grace, then exit 0.
'use strict';
const http = require('node:http');
const net = require('node:net');
const crypto = require('node:crypto');

const instance = process.env.OXTUI_INSTANCE ?? '-';
const started = Date.now();
let draining = false;

const server = http.createServer((req, res) => {
  if (draining) res.setHeader('Connection', 'close');
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/health') return send(res, 200, 'ok\n');
  if (url.pathname === '/cpu') {
    let h = Buffer.from('oxtui');
    const n = Math.min(Number(url.searchParams.get('n') ?? 200000), 5000000);
    for (let i = 0; i < n; i++) h = crypto.createHash('sha256').update(h).digest();
    return send(res, 200, `${h.toString('hex').slice(0, 16)} from pid ${process.pid}\n`);
  }
  if (url.pathname === '/slow') {
    const s = Math.min(Number(url.searchParams.get('s') ?? 2), 30);
    return setTimeout(() => send(res, 200, `slow reply from pid ${process.pid}\n`), s * 1000);
  }
  if (url.pathname === '/') {
    return send(res, 200, `hello from pid ${process.pid} (instance ${instance}), up ${Math.round((Date.now() - started) / 1000)}s\n`);
  }
  send(res, 404, 'not found\n');
});
server.keepAliveTimeout = 5000;

function send(res, code, body) {
  res.writeHead(code, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

// fd 3 from oxtui (systemd's LISTEN_FDS convention); SERVER_FD for any other inherited listening socket
// (supervisord's fcgi-program hands it over as fd 0); else bind PORT ourselves.
const target = process.env.LISTEN_FDS === '1' ? { fd: 3 }
  : process.env.SERVER_FD ? { fd: Number(process.env.SERVER_FD) }
  : { port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' };
server.listen(target, () => {
  console.log(`api: pid ${process.pid} instance ${instance} listening on ${process.env.HOST ?? ''}:${process.env.PORT ?? ''}`);
  if (process.send) process.send('ready');   // PM2's wait_ready; harmless elsewhere
});

// SIGTERM from oxtui (stop_signal); SIGINT is what PM2 sends on reload. Both drain the same way.
const drain = () => {
  if (draining) return;
  draining = true;
  console.log(`api: pid ${process.pid} draining`);
  // net.Server's close: stop accepting, leave open connections alone (http.Server.close would cut idle ones).
  net.Server.prototype.close.call(server, () => {
    console.log(`api: pid ${process.pid} drained, bye`);
    process.exit(0);
  });
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
  setTimeout(() => server.closeAllConnections(), 8000).unref();
};
process.on('SIGTERM', drain);
process.on('SIGINT', drain);
