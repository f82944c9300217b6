// The one mapping from domain error codes to HTTP. A code without a status does not compile.
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ErrorCode } from '../errors.js';

export const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  invalid_input: 400,
  list_required: 400,
  unauthorized: 401,
  cross_site: 403,
  list_not_found: 404,
  list_exists: 409,
  subscriber_not_found: 404,
  not_confirmed: 409,
  idempotency_key_in_progress: 409,
  idempotency_key_reused: 422,
  campaign_not_found: 404,
  campaign_not_draft: 409,
  campaign_state: 409,
  template_invalid: 422,
  reconsent_needs_text: 422,
  no_material_change: 409,
  send_at_out_of_range: 422,
  segment_invalid: 422,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  unavailable: 503,
  log_halted: 503,
  webhook_url_refused: 422,
  webhook_not_found: 404,
  import_invalid: 422,
  import_not_found: 404,
};

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    fields?: Record<string, string>;
    details?: { source: string; line: number | null; message: string }[];
  };
}
