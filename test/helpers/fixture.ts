// The usual set-up of a test file: its own database, optionally a real SMTP peer, and the
// service over both; torn down after the file.
import { afterAll, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from './db.js';
import { createTestService, type TestService } from './service.js';
import { SmtpSink } from './smtp.js';

export interface Fixture {
  tdb: TestDatabase;
  smtp: SmtpSink;
  service: TestService;
}

export function useTestService(options: { smtp?: boolean; env?: Record<string, string>; lists?: string[] } = {}): Fixture {
  const fixture = {} as Fixture;
  beforeAll(async () => {
    fixture.tdb = await createTestDatabase();
    if (options.smtp) fixture.smtp = await new SmtpSink().start();
    fixture.service = await createTestService(fixture.tdb.db, {
      ...(options.smtp && { smtpUrl: fixture.smtp.url }), ...(options.env && { env: options.env }),
    });
    for (const slug of options.lists ?? []) {
      const response = await fixture.service.api('POST', '/api/v1/lists', {
        slug, name: `The ${slug}`, consent_text: `Send me ${slug} by mail, about once a week.`,
      });
      if (response.status !== 201) throw new Error(`list ${slug} not created: ${response.status}`);
    }
  });
  afterAll(async () => {
    fixture.service?.close();
    await fixture.smtp?.stop();
    await fixture.tdb?.drop();
  });
  return fixture;
}
