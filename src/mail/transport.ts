// Where mail goes: a pooled SMTP relay (SMTP_URL), or in development a folder of .eml files.
import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { DkimConfig } from '../config.js';
import { buildMessage, type OutgoingMail, type PiecedMail } from './mime.js';

export type { OutgoingMail };

// nodemailer's default list (RFC 6376 §5.4.1) plus List-Unsubscribe-Post: the one-click
// header must be signed, or a receiver may ignore it (RFC 8058 §4).
const DKIM_HEADERS = 'From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:'
  + 'Content-Transfer-Encoding:Content-ID:Content-Description:Resent-Date:Resent-From:Resent-Sender:Resent-To:'
  + 'Resent-Cc:Resent-Message-ID:In-Reply-To:References:List-Id:List-Help:List-Unsubscribe:List-Unsubscribe-Post:'
  + 'List-Subscribe:List-Post:List-Owner:List-Archive';

const dkimOptions = (dkim: DkimConfig | undefined) => dkim && { ...dkim, headerFieldNames: DKIM_HEADERS };

/** A fresh Message-ID in the domain of the From address. */
export function messageId(mailFrom: string): string {
  const domain = /@([^>\s]+)>?\s*$/.exec(mailFrom)?.[1] ?? 'localhost';
  return `<${randomUUID()}@${domain}>`;
}

export interface MailSender {
  /** Resolves with the relay's answer; rejects with a SendError. */
  send(mail: OutgoingMail | PiecedMail): Promise<string>;
  close(): void;
}

/** A failed send: `permanent` for a 5xx answer (retrying cannot help), else temporary. */
export class SendError extends Error {
  constructor(message: string, readonly permanent: boolean) {
    super(message);
    this.name = 'SendError';
  }
}

interface NodemailerError extends Error {
  responseCode?: number;
  response?: string;
  code?: string;
}

function toSendError(error: unknown): SendError {
  const e = error as NodemailerError;
  const permanent = typeof e.responseCode === 'number' && e.responseCode >= 500 && e.responseCode < 600;
  return new SendError((e.response ?? e.message ?? String(error)).slice(0, 1000), permanent);
}

export function smtpSender(smtpUrl: string, options: { dkim?: DkimConfig | undefined; maxConnections?: number }): MailSender {
  const url = new URL(smtpUrl);
  const transport = nodemailer.createTransport({
    host: url.hostname,
    port: Number(url.port) || (url.protocol === 'smtps:' ? 465 : 587),
    secure: url.protocol === 'smtps:',
    auth: url.username ? { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) } : undefined,
    pool: true,
    maxConnections: options.maxConnections ?? 5,
    maxMessages: 1000,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
    // A relay on localhost or inside a private network often has a self-signed certificate;
    // STARTTLS is still used when offered. smtps:// verifies as usual.
    tls: { rejectUnauthorized: url.protocol === 'smtps:' },
    dkim: dkimOptions(options.dkim),
  });
  return {
    async send(mail) {
      try {
        // The Message-ID given too, though the raw message has it: nodemailer otherwise makes one
        // of its own from the system's random bytes, for its logs alone (1.4% of a campaign worker's CPU).
        const info = await transport.sendMail({ ...buildMessage(mail), messageId: mail.messageId });
        return String(info.response ?? '');
      } catch (error) {
        throw toSendError(error);
      }
    },
    close: () => transport.close(),
  };
}

/** Development: each mail as an .eml file, written whole then renamed so no reader sees half. */
export function folderSender(dir: string, options: { dkim?: DkimConfig | undefined } = {}): MailSender {
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix', dkim: dkimOptions(options.dkim) });
  return {
    async send(mail) {
      const info = await transport.sendMail(buildMessage(mail));
      await mkdir(dir, { recursive: true });
      const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 8)}.eml`;
      const temporary = path.join(dir, `.${name}.tmp`);
      await writeFile(temporary, info.message as Buffer);
      await rename(temporary, path.join(dir, name));
      return `written ${name}`;
    },
    close: () => transport.close(),
  };
}
