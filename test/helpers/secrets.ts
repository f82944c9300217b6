// The run's secrets, in a module of their own so the global teardown can look for them in
// the logs without loading the test helpers (which need a test worker).
export const API_KEY = 'test-api-key-0123456789abcdef';
export const TEST_SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
