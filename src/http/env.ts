// The variables a request carries through the app for its one error handler (app.ts): the
// language of an error page, and whether the caller wants JSON instead. The audiences that
// answer with pages (public.ts, preferences.ts) set them; the API answers JSON regardless.
import type { Locale } from '../i18n.js';

export type AppEnv = { Variables: { locale: Locale; wantsJson: boolean } };
