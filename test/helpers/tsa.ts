// A real RFC 3161 time-stamping authority for tests: `openssl ts -reply` behind a small HTTP
// server, with its own self-signed signing certificate (extendedKeyUsage timeStamping).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const CONFIG = `
[ tsa ]
default_tsa = local
[ local ]
dir = DIR
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1
other_policies = 1.3.6.1.4.1.55555.2
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`;

export class LocalTsa {
  private dir = '';
  private server: Server | undefined;
  url = '';
  /** Paths of the authority's certificate, for `openssl ts -verify -CAfile`. */
  certificate = '';
  requests = 0;
  /** Answer with this HTTP status instead of a time-stamp (an authority that is down). */
  failWith: number | undefined;

  async start(): Promise<this> {
    this.dir = await mkdtemp(path.join(tmpdir(), 'assent-tsa-'));
    this.certificate = path.join(this.dir, 'tsa.crt');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=assent test TSA',
      '-keyout', path.join(this.dir, 'tsa.key'), '-out', this.certificate,
      '-addext', 'extendedKeyUsage=critical,timeStamping', '-addext', 'keyUsage=critical,digitalSignature']);
    await writeFile(path.join(this.dir, 'serial'), '01\n');
    await writeFile(path.join(this.dir, 'tsa.cnf'), CONFIG.replace('DIR', this.dir));
    let next = 0;
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', async () => {
        this.requests += 1;
        if (this.failWith) {
          res.writeHead(this.failWith).end();
          return;
        }
        const id = (next += 1);
        const query = path.join(this.dir, `q${id}.der`);
        const reply = path.join(this.dir, `r${id}.der`);
        try {
          await writeFile(query, Buffer.concat(chunks));
          await run('openssl', ['ts', '-reply', '-config', path.join(this.dir, 'tsa.cnf'), '-queryfile', query, '-out', reply]);
          res.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(await readFile(reply));
        } catch (error) {
          res.writeHead(500).end(String(error));
        }
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/tsa`;
    return this;
  }

  /** `openssl ts -verify` of a token over a file's contents, as a regulator would run it. */
  async opensslVerifies(token: Buffer, data: string): Promise<boolean> {
    const tokenFile = path.join(this.dir, `t${Date.now()}.der`);
    const dataFile = `${tokenFile}.data`;
    await writeFile(tokenFile, token);
    await writeFile(dataFile, data);
    try {
      const { stdout } = await run('openssl', ['ts', '-verify', '-data', dataFile, '-in', tokenFile, '-token_in', '-CAfile', this.certificate]);
      return stdout.includes('Verification: OK');
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }
}
