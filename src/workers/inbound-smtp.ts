// The SMTP listener for bounces and complaints (INBOUND_SMTP_PORT): in the worker role, or
// alone as `assent inbound`. It takes mail for BOUNCE_ADDRESS (with or without a VERP tag)
// and for MAIL_FROM's address, where replies and reports without a tag land, and refuses
// every other recipient (550 5.1.1): it is no open relay and no mailbox.
//
// Whatever it accepts it answers 250, whether or not the message was a report about a mail
// of ours: a 5xx would only make the remote server send a bounce of our bounce. The
// exceptions: a message over MAX_SMTP_REPORT_BYTES (552 5.3.4, RFC 5321 §4.5.3.1.10 and
// RFC 1870), and a database we cannot reach (451 4.3.0: the sender keeps it and tries again).
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { SMTPServer } from 'smtp-server';
import { handleRawReport } from '../consent/reports.js';
import type { Deps } from '../deps.js';

/** A report is a few kilobytes, with our mail attached tens; 2 MiB leaves room and refuses floods. */
export const MAX_SMTP_REPORT_BYTES = 2 * 1024 * 1024;

type ListenerDeps = Pick<Deps, 'db' | 'config' | 'metrics' | 'clock' | 'log'>;

const addressOf = (text: string) => (/<([^<>\s]+@[^<>\s]+)>\s*$/.exec(text)?.[1] ?? text.trim()).toLowerCase();

/** Whether `recipient` is ours: BOUNCE_ADDRESS, BOUNCE_ADDRESS with a `+` tag, or MAIL_FROM's address. */
export function isReportRecipient(config: Pick<Deps['config'], 'inbound' | 'mailFrom'>, recipient: string): boolean {
  const address = recipient.toLowerCase();
  if (address === addressOf(config.mailFrom)) return true;
  const bounce = config.inbound.bounceAddress?.toLowerCase();
  if (!bounce) return false;
  if (address === bounce) return true;
  const at = bounce.lastIndexOf('@');
  return address.endsWith(bounce.slice(at)) && address.startsWith(`${bounce.slice(0, at)}+`);
}

const smtpError = (code: number, message: string) => Object.assign(new Error(message), { responseCode: code });

export class InboundSmtpListener {
  private server: SMTPServer | undefined;

  constructor(private readonly deps: ListenerDeps, private readonly options: { maxBytes?: number } = {}) {}

  private get log(): Logger {
    return this.deps.log;
  }

  /** Starts listening; resolves with the port (INBOUND_SMTP_PORT 0 picks a free one). */
  async start(port: number, host: string): Promise<number> {
    const maxBytes = this.options.maxBytes ?? MAX_SMTP_REPORT_BYTES;
    const server = new SMTPServer({
      name: new URL(this.deps.config.publicUrl).hostname,
      banner: 'assent reports',
      authOptional: true,
      // No AUTH (nobody logs in to post a bounce) and no STARTTLS (no certificate is configured):
      // put a relay that holds the domain's certificate in front where TLS is wanted.
      disabledCommands: ['AUTH', 'STARTTLS'],
      size: maxBytes,
      maxClients: 100,
      logger: false,
      closeTimeout: 1_000,
      onRcptTo: (address, _session, callback) => {
        if (isReportRecipient(this.deps.config, address.address)) callback();
        else callback(smtpError(550, '5.1.1 no such mailbox here'));
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        let held = 0;
        stream.on('data', (chunk: Buffer) => {
          // Past the limit the rest is read and dropped: the answer is 552 either way.
          if (held + chunk.length <= maxBytes) chunks.push(chunk);
          held += chunk.length;
        });
        stream.on('end', () => {
          if (stream.sizeExceeded || held > maxBytes) {
            callback(smtpError(552, `5.3.4 a report may be at most ${maxBytes} bytes`));
            return;
          }
          const recipients = session.envelope.rcptTo.map((r) => r.address);
          handleRawReport(this.deps, Buffer.concat(chunks), { envelopeRecipients: recipients }).then(
            () => callback(),
            (error: unknown) => {
              this.log.error({ err: error }, 'could not handle an inbound report; the sender will retry');
              callback(smtpError(451, '4.3.0 try again later'));
            },
          );
        });
      },
    });
    server.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') this.log.warn({ err: error }, 'inbound SMTP connection error');
    });
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const bound = (server.server.address() as AddressInfo).port;
    this.log.info({ host, port: bound }, 'listening for bounces and complaints by SMTP');
    return bound;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
