// RFC 3161 time-stamps from a real authority (openssl ts behind HTTP): asked for, checked,
// and readable by openssl as a regulator would read them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkTimeStamp, requestTimeStamp } from '../src/log/tsa.js';
import { LocalTsa } from './helpers/tsa.js';

const tsa = new LocalTsa();
beforeAll(async () => { await tsa.start(); });
afterAll(async () => { await tsa.stop(); });

const note = 'assent.test/consent-log\n10\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u2014 assent.test/consent-log AAAA\n';

describe('time-stamps (RFC 3161)', () => {
  it('are asked for, checked against what they stamp, and verify with openssl', async () => {
    const before = Date.now();
    const stamp = await requestTimeStamp(tsa.url, note);
    expect(stamp.genTime.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
    expect((await checkTimeStamp(stamp.token, note)).genTime).toEqual(stamp.genTime);
    expect(await tsa.opensslVerifies(stamp.token, note)).toBe(true);
  });

  it('refuse a token over something else, a token altered anywhere, and bytes that are no token', async () => {
    const stamp = await requestTimeStamp(tsa.url, note);
    await expect(checkTimeStamp(stamp.token, `${note}x`)).rejects.toThrow(/over something else/);
    const altered = Buffer.from(stamp.token);
    altered[altered.length - 10]! ^= 0x01; // inside the signature
    await expect(checkTimeStamp(altered, note)).rejects.toThrow(/does not verify|not an RFC 3161/);
    await expect(checkTimeStamp(Buffer.from('not a token'), note)).rejects.toThrow(/not an RFC 3161/);
  });

  it('report an authority that is down', async () => {
    tsa.failWith = 503;
    try {
      await expect(requestTimeStamp(tsa.url, note)).rejects.toThrow(/answered 503/);
    } finally {
      tsa.failWith = undefined;
    }
  });
});
