// The domain's errors: a closed set of codes. http/errors.ts maps each to a status in one
// table, so a new code without a status does not compile.
export type ErrorCode =
  | 'invalid_input'
  | 'list_not_found'
  | 'list_required'
  | 'list_exists'
  | 'subscriber_not_found'
  | 'not_confirmed'
  | 'idempotency_key_reused'
  | 'idempotency_key_in_progress'
  | 'campaign_not_found'
  | 'campaign_not_draft'
  | 'campaign_state'
  | 'template_invalid'
  /** reconsent: true without a new wording (issue 20). */
  | 'reconsent_needs_text'
  /** A re-consent run for a list whose wording never changed materially. */
  | 'no_material_change'
  /** A campaign's send_at in the past or more than a year ahead. */
  | 'send_at_out_of_range'
  /** A campaign's segment with keys we do not know: it would silently select more than meant. */
  | 'segment_invalid'
  | 'unauthorized'
  | 'cross_site'
  | 'rate_limited'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unavailable'
  /** A webhook URL that is not http(s), or private in production (issue 19). */
  | 'webhook_url_refused'
  | 'webhook_not_found'
  /** An import file without an `email` column, or not CSV/NDJSON (issue 19). */
  | 'import_invalid'
  | 'import_not_found'
  /** The consent log stopped signing (docs/consent-log.md): it proves nothing until a person resolves it. */
  | 'log_halted';

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Field name -> what is wrong with it, for invalid_input. */
    readonly fields?: Record<string, string>,
    /** Where a template is wrong, for template_invalid. */
    readonly details?: { source: string; line: number | null; message: string }[],
  ) {
    super(message);
    this.name = 'DomainError';
  }
}
