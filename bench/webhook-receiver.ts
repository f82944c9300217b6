// The endpoint the webhook benchmark calls, in a process of its own so that its work is not
// counted against the worker or the fetch loop beside it: answers every POST 204, counting them.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

let count = 0;
const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => { count += 1; response.writeHead(204).end(); });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.send!({ ready: true, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` });
});
process.on('message', () => process.send!({ count }));
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
