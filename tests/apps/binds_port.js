// A Node app that binds its port itself instead of serving the socket oxtui passes as fd 3: oxtui
// holds the port, so listen() fails with EADDRINUSE. "crash" lets Node print its report and exit 1;
// "quiet" swallows the error and exits 0, as an Express 5 app's listen callback that ignores it does.
const http = require("http");
const [port, mode] = [Number(process.argv[2]), process.argv[3]];
const server = http.createServer((req, res) => res.end("hi\n"));
if (mode === "quiet") server.on("error", () => process.exit(0));
server.listen(port, "127.0.0.1");
