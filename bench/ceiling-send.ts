// The send ceiling: nodemailer's pooled SMTP transport, configured as src/mail/transport.ts
// configures it (same pool size), sending prebuilt messages of the campaign's size to the
// same sink. No database, no rendering, no MIME build: what the relay connection alone allows.
// argv: SMTP_URL COUNT BYTES CONNECTIONS. Answers over IPC with {mailsPerSecond, seconds, maxRssBytes, cpuSeconds}.
import nodemailer from 'nodemailer';

const [url, countArg, bytesArg, connectionsArg] = process.argv.slice(2);
const count = Number(countArg);
const size = Number(bytesArg);
const smtp = new URL(url!);

const transport = nodemailer.createTransport({
  host: smtp.hostname,
  port: Number(smtp.port),
  secure: false,
  pool: true,
  maxConnections: Number(connectionsArg),
  maxMessages: 1000,
  connectionTimeout: 10_000,
  greetingTimeout: 10_000,
  socketTimeout: 30_000,
  tls: { rejectUnauthorized: false },
});

/** A plausible message of exactly `size` bytes: headers, then 76-column body lines. */
function prebuilt(n: number): Buffer {
  const head = [
    'From: News <news@bench.example>', `To: <r${n}@bench.example>`, 'Subject: The weekly news',
    `Message-ID: <${n}.ceiling@bench.example>`, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', '',
  ].join('\r\n');
  const line = `${'x'.repeat(74)}\r\n`;
  let body = '';
  while (head.length + body.length + line.length <= size) body += line;
  return Buffer.from(head + body + 'y'.repeat(Math.max(0, size - head.length - body.length)));
}

const message = prebuilt(0);
// A window of sends in flight, so that every pooled connection always has the next message.
const WINDOW = 64;
let next = 0;
const started = process.hrtime.bigint();
const cpuBefore = process.cpuUsage();
await Promise.all(Array.from({ length: WINDOW }, async () => {
  while (next < count) {
    const n = next++;
    await transport.sendMail({ envelope: { from: 'news@bench.example', to: `r${n}@bench.example` }, raw: message });
  }
}));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage(cpuBefore);
transport.close();
process.send!({
  mailsPerSecond: count / seconds, seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024, cpuSeconds: (cpu.user + cpu.system) / 1e6,
}, () => process.exit(0));
