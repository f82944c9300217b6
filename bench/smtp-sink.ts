// The relay every send benchmark talks to, in a process of its own so that its work is not
// counted against the sender: smtp-server accepting everything, counting messages and bytes,
// keeping nothing. Over IPC, any message is answered with {stats, count, bytes} so far;
// {reset: true} zeroes them after answering.
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

let count = 0;
let bytes = 0;

const server = new SMTPServer({
  authOptional: true,
  // Plain SMTP for the service and the ceiling alike: TLS would measure OpenSSL, not us.
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  closeTimeout: 200,
  // Pooled clients keep their connections; a benchmark sends far more than the default allows.
  maxClients: 1000,
  onData(stream, _session, callback) {
    let size = 0;
    stream.on('data', (chunk: Buffer) => { size += chunk.length; });
    stream.on('end', () => {
      count += 1;
      bytes += size;
      callback();
    });
  },
});
server.on('error', (error: NodeJS.ErrnoException) => {
  // A client that goes away mid-session (a worker we stopped) is not the sink's problem.
  if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') throw error;
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.server.address() as AddressInfo;
  process.send!({ ready: true, url: `smtp://127.0.0.1:${port}` });
});

process.on('message', (message: { reset?: boolean }) => {
  process.send!({ stats: true, count, bytes });
  if (message.reset) { count = 0; bytes = 0; }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
