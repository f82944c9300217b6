// The run's secrets, in a module of their own so the global teardown can look for them in
// the logs without loading the test helpers (which need a test worker).
export const API_KEY = 'test-api-key-0123456789abcdef';
export const TEST_SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
/** The consent log's signing key in tests that run in production mode: a base64 Ed25519 seed. */
export const TEST_LOG_KEY = Buffer.alloc(32, 7).toString('base64');
