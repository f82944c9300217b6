// A real SMTP peer in the test process (smtp-server), parsing what it receives with
// mailparser. It can refuse: answer a chosen code, or stop listening altogether.
import type { AddressInfo } from 'node:net';
import { type ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface ReceivedMail {
  /** MAIL FROM: where bounces of this mail go (a VERP address with BOUNCE_ADDRESS). */
  envelopeFrom: string;
  envelopeTo: string[];
  /** When the peer accepted RCPT TO: the moment this SMTP transaction named its recipient. */
  rcptAt: number;
  raw: Buffer;
  parsed: ParsedMail;
}

type Refusal = { code: number; message: string } | undefined;

export class SmtpSink {
  readonly received: ReceivedMail[] = [];
  /** When set, every message is answered with this instead of 250. */
  refuse: Refusal;
  /**
   * When set, every new connection is answered with this instead of the 220 greeting, and
   * closed: a relay that is up but turns clients away (`421 too busy`, RFC 5321 §3.8).
   */
  refuseConnections: Refusal;
  /** Milliseconds to wait before answering each message: a slow relay. */
  delayMs = 0;
  private readonly rcptTimes = new Map<string, number>();
  private server: SMTPServer | undefined;
  private port = 0;

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      // close() otherwise waits up to 30 s for pooled client connections to leave
      closeTimeout: 200,
      onConnect: (_session, callback) => {
        if (!this.refuseConnections) return callback();
        callback(Object.assign(new Error(this.refuseConnections.message), { responseCode: this.refuseConnections.code }));
      },
      onRcptTo: (_address, session, callback) => {
        this.rcptTimes.set(session.id, Date.now());
        callback();
      },
      onData: (stream, session: SMTPServerSession, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          if (this.refuse) {
            const error = Object.assign(new Error(this.refuse.message), { responseCode: this.refuse.code });
            callback(error);
            return;
          }
          const raw = Buffer.concat(chunks);
          const rcptAt = this.rcptTimes.get(session.id) ?? Date.now();
          const answer = () => simpleParser(raw).then((parsed) => {
            const envelopeFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
            this.received.push({ envelopeFrom, envelopeTo: session.envelope.rcptTo.map((r) => r.address), rcptAt, raw, parsed });
            callback();
          }, callback);
          if (this.delayMs > 0) setTimeout(answer, this.delayMs);
          else void answer();
        });
      },
    });
    // A client that dies mid-session (a killed worker) resets its connection: not our error.
    this.server.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') throw error;
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.server.address() as AddressInfo).port;
    return this;
  }

  /** Stops listening (connections are then refused); start(samePort) brings it back. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restart(): Promise<void> {
    await this.start(this.port);
  }

  /** Waits for a mail to `address` among those received after the first `since`. */
  async waitForMailTo(address: string, since: number, timeoutMs = 10_000): Promise<ReceivedMail> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const mail = this.received.slice(since).find((m) => m.envelopeTo.some((to) => to.toLowerCase() === address.toLowerCase()));
      if (mail) return mail;
      if (Date.now() > deadline) throw new Error(`no mail to ${address} after ${since}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Waits until `count` mails have arrived, or fails after the deadline. */
  async waitFor(count: number, timeoutMs = 10_000): Promise<ReceivedMail[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      if (Date.now() > deadline) throw new Error(`expected ${count} mails, got ${this.received.length}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.received;
  }
}
