// Prometheus metrics, in a registry of their own per process (no global default registry,
// so tests can build as many apps as they like).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'assent_http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    signups: new Counter({ name: 'assent_signups_total', help: 'Signups answered, by outcome: accepted (any address, whatever its state) or honeypot', labelNames: ['outcome'] as const, registers: [registry] }),
    confirmations: new Counter({ name: 'assent_confirmations_total', help: 'Subscriptions confirmed', registers: [registry] }),
    unsubscribes: new Counter({ name: 'assent_unsubscribes_total', help: 'Subscriptions withdrawn', registers: [registry] }),
    mailsSent: new Counter({ name: 'assent_mails_sent_total', help: 'Mails accepted by the relay, by kind', labelNames: ['kind'] as const, registers: [registry] }),
    mailsFailed: new Counter({ name: 'assent_mails_failed_total', help: 'Mail attempts that failed, by kind and whether permanent', labelNames: ['kind', 'permanent'] as const, registers: [registry] }),
    consentLogHalted: new Gauge({
      name: 'assent_consent_log_halted', help: '1 when the consent log stopped signing (the stored tree no longer extends its last checkpoint); /readyz says why',
      registers: [registry],
    }),
    consentLogCheckpoints: new Counter({ name: 'assent_consent_log_checkpoints_total', help: 'Consent log checkpoints signed by this process', registers: [registry] }),
    consentLogLeaves: new Counter({ name: 'assent_consent_log_leaves_total', help: 'Consent events given a leaf of the consent log by this process', registers: [registry] }),
    inboundReports: new Counter({
      name: 'assent_inbound_reports_total',
      help: 'Bounce and complaint reports received, by kind, provider and outcome (applied, counted, duplicate, unmatched, ignored)',
      labelNames: ['kind', 'provider', 'outcome'] as const, registers: [registry],
    }),
    campaignsAutoPaused: new Counter({ name: 'assent_campaigns_auto_paused_total', help: 'Campaigns paused by their complaint or bounce rate', labelNames: ['reason'] as const, registers: [registry] }),
    webhookAttempts: new Counter({ name: 'assent_webhook_attempts_total', help: 'Webhook calls made, by outcome: delivered, failed (to be retried), gave_up, refused (private address)', labelNames: ['outcome'] as const, registers: [registry] }),
    sendLatency: new Histogram({
      name: 'assent_mail_send_seconds', help: 'Time to hand one mail to the relay', labelNames: ['kind'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The queues whose depth is a gauge, `assent_<queue>_queued`. */
const QUEUES = {
  outbox: 'Transactional mails waiting to be sent',
  campaign: 'Campaign messages waiting to be sent',
  reconsent: 'Re-consent mails waiting to be sent',
} as const;

/** Queue depths, counted when Prometheus scrapes (one small query each, from the queue's own store). */
export function registerQueueGauges(metrics: Metrics, countQueued: Record<keyof typeof QUEUES, () => Promise<number>>): void {
  for (const [queue, help] of Object.entries(QUEUES) as [keyof typeof QUEUES, string][]) {
    new Gauge({
      name: `assent_${queue}_queued`, help, registers: [metrics.registry],
      async collect() {
        this.set(await countQueued[queue]());
      },
    });
  }
}
